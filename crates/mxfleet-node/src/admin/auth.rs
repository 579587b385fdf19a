//! Who is calling the admin API, and may they do this.
//!
//! A tonic interceptor runs before every call: it matches the `authorization: Bearer`
//! token against the configured tokens (by SHA-256; the node never keeps a token in
//! clear), or accepts a client certificate that the TLS layer already verified against
//! `admin.tls_client_ca`. It stores the [`Caller`] in the request extensions; each
//! method then asks for the permission it needs with [`require`].

use std::collections::BTreeSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};
use tracing::{info, warn};

use crate::config::{AdminConfig, AdminPermission, TokenSecret};

/// An authenticated caller: a token's name, or `cert:<fingerprint>` for a client
/// certificate, and what it may do.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) name: String,
    permissions: BTreeSet<AdminPermission>,
}

impl Caller {
    /// True when the caller holds `permission`.
    pub(crate) fn may(&self, permission: AdminPermission) -> bool {
        self.permissions.contains(&permission)
    }
}

struct KnownToken {
    name: String,
    digest: [u8; 32],
    permissions: BTreeSet<AdminPermission>,
}

/// The tokens and client-certificate rule of one admin listener.
#[derive(Clone)]
pub(crate) struct Authenticator {
    tokens: Arc<Vec<KnownToken>>,
    client_certs: Option<BTreeSet<AdminPermission>>,
}

impl Authenticator {
    /// Builds the authenticator, reading any token file that validation left unread.
    pub(crate) fn new(config: &AdminConfig) -> Result<Self, String> {
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for token in &config.tokens {
            let digest = match &token.secret {
                TokenSecret::Sha256(digest) => *digest,
                TokenSecret::Unread(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        format!("admin token {:?}: {}: {e}", token.name, path.display())
                    })?;
                    let secret = text.trim();
                    if secret.len() < 16 {
                        return Err(format!(
                            "admin token {:?}: {}: shorter than 16 characters",
                            token.name,
                            path.display()
                        ));
                    }
                    TokenSecret::digest_of(secret)
                }
            };
            tokens.push(KnownToken {
                name: token.name.clone(),
                digest,
                permissions: token.permissions.clone(),
            });
        }
        let client_certs = config
            .tls
            .as_ref()
            .and_then(|tls| tls.client_ca.as_ref())
            .map(|_| config.client_cert_permissions.clone());
        Ok(Authenticator {
            tokens: Arc::new(tokens),
            client_certs,
        })
    }

    /// The interceptor: identifies the caller or refuses the call.
    #[allow(clippy::result_large_err)] // tonic's interceptor signature
    pub(crate) fn intercept(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.identify(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    #[allow(clippy::result_large_err)]
    fn identify(&self, request: &Request<()>) -> Result<Caller, Status> {
        if let Some(header) = request.metadata().get("authorization") {
            let presented = header
                .to_str()
                .ok()
                .and_then(|value| {
                    // RFC 6750: the scheme name is case-insensitive.
                    let (scheme, token) = value.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(token)
                })
                .map(str::trim)
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization header must be `Bearer <token>`")
                })?;
            let digest = TokenSecret::digest_of(presented);
            // Every digest is compared, so the time taken does not depend on which
            // token matched.
            let matched = self.tokens.iter().fold(None, |found, token| {
                if constant_time_eq(&token.digest, &digest) {
                    Some(token)
                } else {
                    found
                }
            });
            return match matched {
                Some(token) => Ok(Caller {
                    name: token.name.clone(),
                    permissions: token.permissions.clone(),
                }),
                None => {
                    warn!(peer = ?request.remote_addr(), "admin_token_rejected");
                    Err(Status::unauthenticated(
                        "unknown admin token; check MXFLEET_TOKEN or --token-file",
                    ))
                }
            };
        }
        if let Some(permissions) = &self.client_certs
            && let Some(certs) = request.peer_certs()
            && let Some(leaf) = certs.first()
        {
            let fingerprint = hex::encode(&Sha256::digest(leaf.as_ref())[..8]);
            return Ok(Caller {
                name: format!("cert:{fingerprint}"),
                permissions: permissions.clone(),
            });
        }
        Err(Status::unauthenticated(
            "no credentials: send `authorization: Bearer <token>` (MXFLEET_TOKEN or \
             --token-file) or a client certificate",
        ))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of `request` if it holds `permission`; logs every admin call it lets
/// through (`admin_call caller=… method=…`).
#[allow(clippy::result_large_err)]
pub(crate) fn require<T>(
    request: &Request<T>,
    permission: AdminPermission,
    method: &'static str,
) -> Result<Caller, Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))?;
    if !caller.permissions.contains(&permission) {
        warn!(caller = %caller.name, method, permission = %permission, "admin_call_denied");
        return Err(Status::permission_denied(format!(
            "{method} needs the \"{permission}\" permission, which {:?} does not have",
            caller.name
        )));
    }
    if permission != AdminPermission::View {
        info!(caller = %caller.name, method, "admin_call");
    }
    Ok(caller)
}
