//! STARTTLS server configuration for inbound SMTP: several certificates, chosen by SNI.
//!
//! A backup MX answers for many domains, so it may hold one certificate per name. This module
//! turns PEM files into one `rustls::ServerConfig` (ring provider, TLS 1.2 and 1.3, default
//! session resumption, no ALPN) that the session hands to `tokio_rustls::TlsAcceptor`.
//!
//! Main types:
//! - [`CertificatePem`]: one chain and key as PEM, plus the DNS names it serves. The names
//!   come from config; they are not read from the certificate's subjectAltName.
//! - [`server_config`]: validates every entry and builds the config. The first entry is the
//!   default, served to clients without SNI or with a name that no entry lists.
//! - [`TlsConfigError`]: every load failure, each naming its file or `certificates[i]` entry.
//!
//! Layout: PEM loading and key checks, then the name table (sans-IO: SNI in, entry index
//! out), then the `ResolvesServerCert` that joins the two.
//!
//! STARTTLS injection (CVE-2011-0411): plaintext that a client pipelines after `STARTTLS`
//! must be discarded, never read as the first command inside TLS. The session does that
//! when it hands the stream to the acceptor; this module only builds the config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::debug;

/// One certificate chain (leaf first) and its private key, both PEM.
#[derive(Clone)]
pub struct CertificatePem {
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
    /// DNS names served with this certificate. `*.example.org` matches exactly one extra
    /// label. Compared without case; may be empty only for the first (default) entry.
    pub names: Vec<String>,
}

/// Redacts the key, so the struct can appear in logs and test failures.
impl std::fmt::Debug for CertificatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatePem")
            .field("chain_bytes", &self.chain.len())
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("no TLS certificate configured")]
    NoCertificates,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: malformed PEM: {source}")]
    Pem { origin: String, source: pem::Error },
    #[error("{origin}: no CERTIFICATE section")]
    EmptyChain { origin: String },
    #[error("{origin}: no private key section (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey { origin: String },
    #[error("{origin}: unsupported private key: {source}")]
    UnsupportedKey {
        origin: String,
        source: rustls::Error,
    },
    #[error("{origin}: unusable leaf certificate: {source}")]
    BadCertificate {
        origin: String,
        source: rustls::Error,
    },
    #[error("the key in {key_origin} does not match the certificate in {chain_origin}")]
    KeyMismatch {
        chain_origin: String,
        key_origin: String,
    },
    #[error("{origin}: invalid server name {name:?}")]
    InvalidName { origin: String, name: String },
    #[error("server name {name:?} is listed by both {first} and {second}")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
    #[error("{origin}: lists no server names, so it could never be chosen")]
    NoNames { origin: String },
    #[error("building the rustls server config: {0}")]
    Rustls(#[source] rustls::Error),
}

/// Reads a chain and key from disk and checks them now, so a bad file is reported with its
/// path. Blocking I/O: call at startup, before binding sockets. `names` is left empty for
/// the config layer to fill.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<CertificatePem, TlsConfigError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem = CertificatePem {
        chain: read(cert)?,
        key: read(key)?,
        names: Vec::new(),
    };
    let (cert_origin, key_origin) = (cert.display().to_string(), key.display().to_string());
    certified_key(&pem, &cert_origin, &key_origin, &provider())?;
    Ok(pem)
}

/// Builds the server config. Errors name entries as `certificates[i]`, in input order.
pub fn server_config(
    certs: &[CertificatePem],
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = provider();
    let origins: Vec<String> = (0..certs.len())
        .map(|i| format!("certificates[{i}]"))
        .collect();
    let keys = certs
        .iter()
        .zip(&origins)
        .map(|(pem, origin)| certified_key(pem, origin, origin, &provider).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&[String]> = certs.iter().map(|c| c.names.as_slice()).collect();
    let resolver = SniResolver {
        table: NameTable::build(&names, &origins)?,
        keys,
        origins,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn certified_key(
    pem: &CertificatePem,
    chain_origin: &str,
    key_origin: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(&pem.chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem {
            origin: chain_origin.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsConfigError::EmptyChain {
            origin: chain_origin.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            origin: key_origin.to_owned(),
        },
        source => TlsConfigError::Pem {
            origin: key_origin.to_owned(),
            source,
        },
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsConfigError::UnsupportedKey {
            origin: key_origin.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot report its public half; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsConfigError::KeyMismatch {
            chain_origin: chain_origin.to_owned(),
            key_origin: key_origin.to_owned(),
        }),
        Err(source) => Err(TlsConfigError::BadCertificate {
            origin: chain_origin.to_owned(),
            source,
        }),
    }
}

/// SNI name to entry index. Keys are lower-case without a trailing dot; `wildcard` is keyed
/// by the part after `*.`.
#[derive(Debug, Default)]
struct NameTable {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl NameTable {
    fn build(names: &[&[String]], origins: &[String]) -> Result<Self, TlsConfigError> {
        if names.is_empty() {
            return Err(TlsConfigError::NoCertificates);
        }
        let mut table = Self::default();
        for (index, (list, origin)) in names.iter().zip(origins).enumerate() {
            if index > 0 && list.is_empty() {
                return Err(TlsConfigError::NoNames {
                    origin: origin.clone(),
                });
            }
            for raw in list.iter() {
                let name = normalize(raw);
                let invalid = || TlsConfigError::InvalidName {
                    origin: origin.clone(),
                    name: raw.clone(),
                };
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut table.wildcard, parent.to_owned()),
                    None => (&mut table.exact, name.clone()),
                };
                if !key.split('.').all(valid_label) {
                    return Err(invalid());
                }
                if let Some(first) = map.insert(key, index) {
                    return Err(TlsConfigError::DuplicateName {
                        name,
                        first: origins[first].clone(),
                        second: origin.clone(),
                    });
                }
            }
        }
        Ok(table)
    }

    /// Exact name first, then a wildcard covering exactly one leading label, else entry 0.
    fn lookup(&self, sni: Option<&str>) -> (usize, &'static str) {
        let Some(sni) = sni.map(normalize) else {
            return (0, "no_sni");
        };
        if let Some(&index) = self.exact.get(&sni) {
            return (index, "exact");
        }
        let parent = sni.split_once('.').map(|(_, parent)| parent);
        match parent.and_then(|parent| self.wildcard.get(parent)) {
            Some(&index) => (index, "wildcard"),
            None => (0, "unknown_name"),
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Owned by the `ServerConfig`; immutable, so a certificate change means a new config.
#[derive(Debug)]
struct SniResolver {
    table: NameTable,
    keys: Vec<Arc<CertifiedKey>>,
    origins: Vec<String>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name();
        let (index, matched) = self.table.lookup(sni);
        let cert = &self.origins[index];
        debug!(sni = sni.unwrap_or(""), %cert, matched, "tls_cert_selected");
        Some(Arc::clone(&self.keys[index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::{ClientConfig, RootCertStore};
    use rustls_pki_types::ServerName;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    type Ca = CertifiedIssuer<'static, KeyPair>;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn new_ca() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf for `sans`, routed by `names` (which may differ, to test the default).
    fn leaf(ca: &Ca, sans: &[&str], names: &[&str]) -> (CertificatePem, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(strings(sans))
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        let (chain, key) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
        (
            CertificatePem {
                chain,
                key,
                names: strings(names),
            },
            cert.der().clone(),
        )
    }

    /// Full handshake over an in-memory pipe; returns the leaf the client was served.
    async fn handshake(
        ca: &Ca,
        server: &Arc<rustls::ServerConfig>,
        name: &str,
    ) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (client, server) = tokio::join!(
            TlsConnector::from(Arc::new(client)).connect(name, client_io),
            TlsAcceptor::from(Arc::clone(server)).accept(server_io),
        );
        server.expect("server handshake");
        let client = client.expect("client handshake");
        client
            .get_ref()
            .1
            .peer_certificates()
            .expect("peer certificates")[0]
            .clone()
    }

    #[tokio::test]
    async fn sni_picks_exact_then_wildcard_then_default() {
        let ca = new_ca();
        // The default also carries SANs it is not routed by, so the client accepts it there.
        let sans = ["mx1.example.org", "127.0.0.1", "unlisted.example.org"];
        let (mx1, mx1_der) = leaf(&ca, &sans, &["mx1.example.org"]);
        let (mx2, mx2_der) = leaf(&ca, &["mx2.example.net"], &["MX2.example.net"]);
        let (wild, wild_der) = leaf(&ca, &["*.example.com"], &["*.example.com"]);
        let config = server_config(&[mx1, mx2, wild]).unwrap();

        assert_eq!(handshake(&ca, &config, "mx2.example.net").await, mx2_der);
        assert_eq!(handshake(&ca, &config, "mx1.example.org").await, mx1_der);
        assert_eq!(handshake(&ca, &config, "a.example.com").await, wild_der);
        // An IP address as server name makes the client send no SNI.
        assert_eq!(handshake(&ca, &config, "127.0.0.1").await, mx1_der);
        assert_eq!(
            handshake(&ca, &config, "unlisted.example.org").await,
            mx1_der
        );
    }

    #[test]
    fn name_table_matching_rules() {
        let (a, b) = (strings(&["mx.example.org"]), strings(&["*.Example.com."]));
        let origins = strings(&["certificates[0]", "certificates[1]"]);
        let table = NameTable::build(&[&a, &b], &origins).unwrap();
        assert_eq!(table.lookup(Some("MX.Example.ORG.")), (0, "exact"));
        assert_eq!(table.lookup(Some("x.EXAMPLE.com")), (1, "wildcard"));
        assert_eq!(table.lookup(Some("example.com")), (0, "unknown_name"));
        assert_eq!(table.lookup(Some("a.b.example.com")), (0, "unknown_name"));
        assert_eq!(table.lookup(None), (0, "no_sni"));

        let err = NameTable::build(&[&a, &a], &origins).unwrap_err();
        assert!(matches!(err, TlsConfigError::DuplicateName { .. }), "{err}");
        let err = NameTable::build(&[&strings(&["a.*.example.com"])], &origins).unwrap_err();
        assert!(matches!(err, TlsConfigError::InvalidName { .. }), "{err}");
        let err = NameTable::build(&[&a, &[]], &origins).unwrap_err();
        assert!(matches!(err, TlsConfigError::NoNames { .. }), "{err}");
        let err = server_config(&[]).unwrap_err();
        assert!(matches!(err, TlsConfigError::NoCertificates), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused_at_load() {
        let ca = new_ca();
        let (mut mx1, _) = leaf(&ca, &["mx1.example.org"], &["mx1.example.org"]);
        mx1.key = leaf(&ca, &["mx2.example.net"], &[]).0.key;
        let err = server_config(std::slice::from_ref(&mx1)).unwrap_err();
        assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("mx1.crt"), dir.path().join("mx2.key"));
        std::fs::write(&cert, &mx1.chain).unwrap();
        std::fs::write(&key, &mx1.key).unwrap();
        let err = load_pem_files(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("mx1.crt") && err.contains("mx2.key"), "{err}");
    }

    #[test]
    fn bad_pem_is_refused_with_its_path() {
        let (mx1, _) = leaf(&new_ca(), &["mx1.example.org"], &[]);
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, contents: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        let (cert, key) = (file("good.crt", &mx1.chain), file("good.key", &mx1.key));
        let truncated = file("truncated.crt", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
        server_config(&[load_pem_files(&cert, &key).unwrap()]).unwrap();

        let refused = |cert: &Path, key: &Path, path: &str| {
            let err = load_pem_files(cert, key).unwrap_err();
            assert!(err.to_string().contains(path), "{err}");
            err
        };
        let err = refused(&truncated, &key, "truncated.crt");
        assert!(matches!(err, TlsConfigError::Pem { .. }), "{err}");
        let err = refused(&cert, &cert, "good.crt");
        assert!(matches!(err, TlsConfigError::NoPrivateKey { .. }), "{err}");
        let err = refused(&key, &key, "good.key");
        assert!(matches!(err, TlsConfigError::EmptyChain { .. }), "{err}");
        let err = refused(&dir.path().join("missing.crt"), &key, "missing.crt");
        assert!(matches!(err, TlsConfigError::Read { .. }), "{err}");
    }
}
