//! TLS configuration: the listener's [`rustls::ServerConfig`] from PEM files,
//! and the [`rustls::ClientConfig`] used for outgoing calls.
//!
//! Both always use the aws-lc-rs crypto provider explicitly, never a process
//! default, and offer ALPN `h2` then `http/1.1`.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use oidc_gateway::server::tls;
//!
//! let server = tls::load_server_config(Path::new("certs/gateway.crt"), Path::new("certs/gateway.key"))?;
//! let client = tls::client_config(Some(Path::new("certs/ca.pem")))?;
//! # Ok::<(), tls::TlsError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered by the gateway, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A problem building a TLS configuration. Messages name the file and what is
/// wrong with it; they never include key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{} is not a valid PEM file ({what}): {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected in it.
        what: &'static str,
        /// The parse error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error(
        "{} contains no PEM private key (expected a PKCS#8, a PKCS#1 RSA or a SEC1 EC key block)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate chain / key pair (unsupported key type,
    /// key does not match the certificate, ...).
    #[error("certificate {} with key {} is unusable: {source}", cert.display(), key.display())]
    CertifiedKey {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("{}: certificate #{index} is not a usable trust anchor: {source}", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, from 1.
        index: usize,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The crypto provider does not support the default protocol versions
    /// (not expected with aws-lc-rs).
    #[error("tls protocol setup failed: {0}")]
    Protocol(#[source] rustls::Error),
}

/// The crypto provider used for every TLS configuration in the gateway.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate of a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| map_pem_err(path, "certificates", source);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => map_pem_err(path, "private key", other),
    })
}

fn map_pem_err(path: &Path, what: &'static str, source: pem::Error) -> TlsError {
    match source {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            what,
            source,
        },
    }
}

/// Builds the listener's TLS configuration from a PEM certificate chain
/// (leaf first) and a PEM private key, with ALPN `h2` and `http/1.1`.
///
/// Fails with a message naming the file when a file is missing, unreadable,
/// empty, not PEM, or when the key does not fit the certificate.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let private_key = load_private_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|source| TlsError::CertifiedKey {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    enable_resumption(&mut config)?;
    Ok(Arc::new(config))
}

/// Session resumption for returning clients: stateless TLS 1.3 tickets
/// (AEAD-sealed under a key that rustls rotates every 6 hours, per
/// process) and a bounded stateful cache for TLS 1.2 session ids.
fn enable_resumption(config: &mut rustls::ServerConfig) -> Result<(), TlsError> {
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Protocol)?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(())
}

/// The PEM bytes of a certificate chain file and its key file, read together
/// (one snapshot: parsing and change detection use the same bytes).
pub struct CertFiles {
    /// The certificate chain file and its bytes.
    pub cert: (PathBuf, Vec<u8>),
    /// The key file and its bytes.
    pub key: (PathBuf, Vec<u8>),
}

impl std::fmt::Debug for CertFiles {
    /// The paths only: never the key's bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert.0)
            .field("key", &self.key.0)
            .finish_non_exhaustive()
    }
}

impl CertFiles {
    /// Reads both files (following symlinks, as cert-manager's mounted
    /// Secrets need).
    pub fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(CertFiles {
            cert: (cert.to_owned(), read(cert)?),
            key: (key.to_owned(), read(key)?),
        })
    }

    /// A SHA-256 digest of both files' contents, to notice a change without
    /// keeping the key's bytes around.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((self.cert.1.len() as u64).to_be_bytes());
        h.update(&self.cert.1);
        h.update(&self.key.1);
        h.finalize().into()
    }

    /// Parses the chain (leaf first) and the key and checks that they fit.
    pub fn certified_key(&self) -> Result<rustls::sign::CertifiedKey, TlsError> {
        let (cert_path, cert_pem) = &self.cert;
        let (key_path, key_pem) = &self.key;
        let pem_err = |source| map_pem_err(cert_path, "certificates", source);
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificates {
                path: cert_path.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                path: key_path.clone(),
            },
            other => map_pem_err(key_path, "private key", other),
        })?;
        rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|source| {
            TlsError::CertifiedKey {
                cert: cert_path.clone(),
                key: key_path.clone(),
                source,
            }
        })
    }
}

/// The listener's TLS configuration with a certificate chosen per handshake
/// by `resolver` (a [`ReloadingCert`](super::reloading_cert::ReloadingCert)
/// swaps it while serving), with ALPN `h2` and `http/1.1`.
pub fn server_config_with_resolver(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    enable_resumption(&mut config)?;
    Ok(Arc::new(config))
}

/// Client TLS configuration for outgoing HTTPS calls (identity provider,
/// https upstreams): the Mozilla roots from `webpki-roots`, plus every
/// certificate in `extra_roots_pem` (an internal CA), the aws-lc-rs provider,
/// and ALPN `h2`, `http/1.1`.
///
/// `hyper_rustls::HttpsConnectorBuilder::with_tls_config` panics when ALPN is
/// already set: clear `alpn_protocols` before handing this config to it.
pub fn client_config(extra_roots_pem: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_roots_pem {
        for (i, cert) in load_certs(path)?.into_iter().enumerate() {
            roots.add(cert).map_err(|source| TlsError::BadRoot {
                path: path.to_owned(),
                index: i + 1,
                source,
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn certs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    }

    #[test]
    fn load_server_config_accepts_pkcs8_pkcs1_and_sec1_keys() {
        let d = certs_dir();
        for (cert, key) in [
            ("gateway.crt", "gateway.key"),
            ("gateway.crt", "gateway.pkcs1.key"),
            ("gateway-ec.crt", "gateway-ec.key"),
        ] {
            let config = load_server_config(&d.join(cert), &d.join(key))
                .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
            assert_eq!(
                config.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
            assert!(config.ticketer.enabled(), "TLS 1.3 resumption tickets");
        }
    }

    #[test]
    fn load_server_config_missing_file_names_it() {
        let d = certs_dir();
        let err = load_server_config(&d.join("nope.crt"), &d.join("gateway.key")).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.crt"), "{err}");
    }

    #[test]
    fn load_server_config_key_as_cert_is_no_certificates() {
        let d = certs_dir();
        let err = load_server_config(&d.join("gateway.key"), &d.join("gateway.key")).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err:?}");
        assert!(err.to_string().contains("gateway.key"), "{err}");
    }

    #[test]
    fn load_server_config_cert_as_key_is_no_private_key() {
        let d = certs_dir();
        let err = load_server_config(&d.join("gateway.crt"), &d.join("gateway.crt")).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    }

    #[test]
    fn load_server_config_mismatched_key_fails() {
        let d = certs_dir();
        let err =
            load_server_config(&d.join("gateway.crt"), &d.join("gateway-ec.key")).unwrap_err();
        assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err:?}");
    }

    #[test]
    fn cert_files_parse_like_load_server_config() {
        let d = certs_dir();
        let ok = CertFiles::read(&d.join("gateway-ec.crt"), &d.join("gateway-ec.key")).unwrap();
        ok.certified_key().unwrap();
        let other = CertFiles::read(&d.join("gateway.crt"), &d.join("gateway.key")).unwrap();
        assert_ne!(ok.digest(), other.digest());
        let mismatched =
            CertFiles::read(&d.join("gateway.crt"), &d.join("gateway-ec.key")).unwrap();
        let err = mismatched.certified_key().unwrap_err();
        assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err:?}");
        let swapped = CertFiles::read(&d.join("gateway.key"), &d.join("gateway.crt")).unwrap();
        assert!(matches!(
            swapped.certified_key().unwrap_err(),
            TlsError::NoCertificates { .. }
        ));
        let err = CertFiles::read(&d.join("nope.crt"), &d.join("gateway.key")).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
    }

    #[test]
    fn client_config_with_extra_ca_has_alpn() {
        let config = client_config(Some(&certs_dir().join("ca.pem"))).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let err = client_config(Some(&certs_dir().join("gateway.key"))).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err:?}");
    }
}
