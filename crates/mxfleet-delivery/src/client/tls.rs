//! STARTTLS for the client (RFC 3207): the rustls client config each [`TlsPolicy`]
//! needs, the upgrade itself, and what it negotiated.
//!
//! - `Opportunistic` and `Required` accept any certificate ([`AnyCertificate`]): an MX
//!   host's certificate is rarely checkable (RFC 7435), and encryption without
//!   authentication still defeats passive eavesdropping. Handshake signatures are still
//!   checked, with the ring provider's algorithms.
//! - `Verify` checks the chain against webpki-roots plus the configured extra roots,
//!   and the name against `ConnectTarget::host`.
//!
//! The config is built per connection, only when STARTTLS is actually attempted.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::connection::{ClientStream, within};
use super::{ClientError, SmtpConnection, Stage, TlsPolicy};

/// What STARTTLS negotiated, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1_3`.
    pub protocol: String,
    /// E.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The certificate was verified (`TlsPolicy::Verify`).
    pub verified: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls config for `policy`; `None` for policies that never start TLS.
fn client_config(policy: &TlsPolicy) -> Result<Option<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match policy {
        TlsPolicy::Disabled => return Ok(None),
        TlsPolicy::Opportunistic | TlsPolicy::Required => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        TlsPolicy::Verify { extra_roots_pem } => {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(pem) = extra_roots_pem {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("extra root PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("extra root certificate: {e}"))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(config))
}

/// Accepts every certificate; used only where nothing is verified by policy.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What the STARTTLS step did.
pub(super) enum StartTlsOutcome {
    /// TLS is on; the caller must EHLO again.
    Established,
    /// Staying in plaintext (not offered or refused, and the policy allows it).
    Plaintext,
}

impl SmtpConnection {
    /// Runs STARTTLS if the policy and the server's offer call for it.
    pub(super) async fn starttls(
        &mut self,
        policy: &TlsPolicy,
    ) -> Result<StartTlsOutcome, ClientError> {
        if *policy == TlsPolicy::Disabled {
            return Ok(StartTlsOutcome::Plaintext);
        }
        if !self.capabilities.starttls {
            if policy.requires_tls() {
                warn!(host = %self.host, "smtp_client_starttls_not_offered");
                return Err(ClientError::StartTlsNotOffered {
                    host: self.host.clone(),
                });
            }
            return Ok(StartTlsOutcome::Plaintext);
        }
        let config = client_config(policy)
            .map_err(|detail| self.tls_config_error(detail))?
            .ok_or_else(|| self.tls_config_error("policy has no TLS config".into()))?;
        let server_name = ServerName::try_from(self.target.host.clone()).map_err(|e| {
            self.tls_config_error(format!("server name {:?}: {e}", self.target.host))
        })?;

        let timeout = self.timeouts.starttls;
        self.write_all(b"STARTTLS\r\n", Stage::Starttls, timeout)
            .await?;
        let reply = self.read_reply(Stage::Starttls, timeout).await?;
        if reply.code != 220 {
            if policy.requires_tls() {
                warn!(host = %self.host, %reply, "smtp_client_starttls_refused");
                return Err(ClientError::Rejected {
                    host: self.host.clone(),
                    stage: Stage::Starttls,
                    reply,
                });
            }
            info!(host = %self.host, %reply, "smtp_client_starttls_refused");
            return Ok(StartTlsOutcome::Plaintext);
        }
        // RFC 3207 §4.2: nothing the server sent before the handshake counts; bytes
        // after `220` could have been injected by a man in the middle.
        if self.replies.has_pending() {
            warn!(host = %self.host, "smtp_client_starttls_extra_input_discarded");
            self.replies.clear();
        }

        let plain = self.take_stream(Stage::Starttls)?;
        let connector = TlsConnector::from(Arc::new(config));
        let handshake = within(timeout, connector.connect(server_name, plain)).await;
        let stream = match handshake {
            Some(Ok(stream)) => stream,
            Some(Err(source)) => {
                warn!(host = %self.host, cause = %source, "smtp_client_tls_failed");
                return Err(ClientError::Tls {
                    host: self.host.clone(),
                    source,
                });
            }
            None => {
                warn!(host = %self.host, ?timeout, "smtp_client_tls_failed");
                return Err(ClientError::Timeout {
                    host: self.host.clone(),
                    stage: Stage::Starttls,
                    after: timeout,
                });
            }
        };
        let (_, session) = stream.get_ref();
        let info = TlsInfo {
            protocol: session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher: session
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            verified: matches!(policy, TlsPolicy::Verify { .. }),
        };
        info!(
            host = %self.host,
            protocol = %info.protocol,
            cipher = %info.cipher,
            verified = info.verified,
            "smtp_client_tls_established"
        );
        self.tls = Some(info);
        self.stream = Some(Box::new(stream) as Box<dyn ClientStream>);
        Ok(StartTlsOutcome::Established)
    }

    fn tls_config_error(&self, detail: String) -> ClientError {
        warn!(host = %self.host, %detail, "smtp_client_tls_failed");
        ClientError::TlsConfig {
            host: self.host.clone(),
            detail,
        }
    }
}
