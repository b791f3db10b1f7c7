//! The listener's certificate, replaceable while serving.
//!
//! [`ReloadingCert`] is the rustls certificate resolver of the main
//! listener: every handshake takes the current certificate, so a new one
//! applies to new connections while open ones keep theirs. It remembers the
//! files it was loaded from and a digest of their contents;
//! [`ReloadingCert::poll`] re-reads them (through symlinks, so a Kubernetes
//! Secret rotated by an atomic `..data` symlink swap is seen like a file
//! replaced in place) and swaps the certificate in when the contents
//! changed and parse. A change that does not parse is reported once, and
//! the running certificate keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::tls::{CertFiles, TlsError};

/// What one [`ReloadingCert::poll`] found.
#[derive(Debug)]
pub enum CertPoll {
    /// The files hold what is serving (or what was refused already).
    Unchanged,
    /// New contents, loaded: new connections get them.
    Reloaded,
    /// New contents that cannot be used (reported once per content).
    Refused(TlsError),
}

/// Where the certificate comes from and what was last seen there.
#[derive(Debug)]
struct Watched {
    cert: PathBuf,
    key: PathBuf,
    /// Digest of the serving files' contents.
    serving: [u8; 32],
    /// The last refusal (digest of the contents, or the read error's text),
    /// so that a bad file is reported once, not at every poll.
    refused: Option<Refusal>,
}

#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Contents([u8; 32]),
    Unreadable(String),
}

/// A certificate resolver whose certificate can be replaced; see the
/// [module docs](self).
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    watched: Mutex<Watched>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.lock();
        f.debug_struct("ReloadingCert")
            .field("cert", &w.cert)
            .field("key", &w.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the chain at `cert` and the key at `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let files = CertFiles::read(cert, key)?;
        let certified = files.certified_key()?;
        Ok(ReloadingCert {
            current: ArcSwap::from_pointee(certified),
            watched: Mutex::new(Watched {
                cert: cert.to_owned(),
                key: key.to_owned(),
                serving: files.digest(),
                refused: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `certified`, read from `files`, from now on (and watches
    /// `files`' paths from now on).
    pub fn replace(&self, files: &CertFiles, certified: CertifiedKey) {
        let mut w = self.lock();
        self.current.store(Arc::new(certified));
        w.cert.clone_from(&files.cert.0);
        w.key.clone_from(&files.key.0);
        w.serving = files.digest();
        w.refused = None;
    }

    /// Re-reads the files and swaps the certificate in when their contents
    /// changed and are usable. Blocking file I/O: call from a blocking task.
    pub fn poll(&self) -> CertPoll {
        let (cert, key) = {
            let w = self.lock();
            (w.cert.clone(), w.key.clone())
        };
        let files = CertFiles::read(&cert, &key);
        let mut w = self.lock();
        if w.cert != cert || w.key != key {
            // Replaced by a reload while reading.
            return CertPoll::Unchanged;
        }
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                let refusal = Refusal::Unreadable(e.to_string());
                return if w.refused.as_ref() == Some(&refusal) {
                    CertPoll::Unchanged
                } else {
                    w.refused = Some(refusal);
                    CertPoll::Refused(e)
                };
            }
        };
        let digest = files.digest();
        if digest == w.serving {
            w.refused = None;
            return CertPoll::Unchanged;
        }
        if w.refused == Some(Refusal::Contents(digest)) {
            return CertPoll::Unchanged;
        }
        match files.certified_key() {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                w.serving = digest;
                w.refused = None;
                CertPoll::Reloaded
            }
            Err(e) => {
                w.refused = Some(Refusal::Contents(digest));
                CertPoll::Refused(e)
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn certs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    }

    fn leaf(r: &ReloadingCert) -> Vec<u8> {
        r.current.load().cert[0].to_vec()
    }

    #[test]
    fn poll_swaps_on_change_refuses_bad_once_and_follows_symlinks() {
        let d = certs_dir();
        let dir = std::env::temp_dir().join(format!("reloading-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The layout of a mounted Secret: files are symlinks into `..data`.
        let data1 = dir.join("..2026_1");
        std::fs::create_dir(&data1).unwrap();
        std::fs::copy(d.join("gateway.crt"), data1.join("tls.crt")).unwrap();
        std::fs::copy(d.join("gateway.key"), data1.join("tls.key")).unwrap();
        std::os::unix::fs::symlink("..2026_1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();

        let r = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
        let first = leaf(&r);
        assert!(matches!(r.poll(), CertPoll::Unchanged));

        // Rotation: a new directory, then `..data` swapped atomically.
        let data2 = dir.join("..2026_2");
        std::fs::create_dir(&data2).unwrap();
        std::fs::copy(d.join("gateway-ec.crt"), data2.join("tls.crt")).unwrap();
        std::fs::copy(d.join("gateway-ec.key"), data2.join("tls.key")).unwrap();
        std::os::unix::fs::symlink("..2026_2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert!(matches!(r.poll(), CertPoll::Reloaded));
        let second = leaf(&r);
        assert_ne!(first, second);

        // A key that does not fit: refused once, the running one stays.
        std::fs::copy(d.join("gateway.key"), data2.join("tls.key")).unwrap();
        assert!(matches!(
            r.poll(),
            CertPoll::Refused(TlsError::CertifiedKey { .. })
        ));
        assert!(matches!(r.poll(), CertPoll::Unchanged));
        assert_eq!(leaf(&r), second);
        // Unreadable: refused once too.
        std::fs::remove_file(data2.join("tls.key")).unwrap();
        assert!(matches!(r.poll(), CertPoll::Refused(TlsError::Read { .. })));
        assert!(matches!(r.poll(), CertPoll::Unchanged));
        // Fixed: picked up.
        std::fs::copy(d.join("gateway.crt"), data2.join("tls.crt")).unwrap();
        std::fs::copy(d.join("gateway.key"), data2.join("tls.key")).unwrap();
        assert!(matches!(r.poll(), CertPoll::Reloaded));
        assert_eq!(leaf(&r), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
