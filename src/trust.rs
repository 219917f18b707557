//! How wopi-guard authenticates the servers it calls (the WOPI host, the office servers): the
//! validated `[upstream_tls]` and `[discovery]` TLS settings, and the PEM CA file they name.

use std::fmt;
use std::path::{Path, PathBuf};

/// How a server wopi-guard connects to is authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the CA certificates in this PEM file; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (no chain, no name check). Only for tests; `check` warns.
    pub insecure_skip_verify: bool,
}

/// Why a CA file cannot be used.
#[derive(Debug)]
pub enum CaFileError {
    /// The file cannot be read.
    Unreadable(PathBuf, std::io::Error),
    /// A PEM section is malformed.
    NotPem(PathBuf, std::io::Error),
    /// A certificate's DER does not parse as X.509.
    BadCertificate(PathBuf, String),
    /// No `-----BEGIN CERTIFICATE-----` section at all.
    Empty(PathBuf),
}

impl fmt::Display for CaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaFileError::Unreadable(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            CaFileError::NotPem(path, e) => write!(f, "{} is not valid PEM: {e}", path.display()),
            CaFileError::BadCertificate(path, e) => {
                write!(f, "{} holds a certificate that does not parse: {e}", path.display())
            }
            CaFileError::Empty(path) => {
                write!(f, "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())
            }
        }
    }
}

impl std::error::Error for CaFileError {}

/// The DER certificates of a PEM CA file: at least one, each a parseable X.509 certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, CaFileError> {
    let text = std::fs::read(path).map_err(|e| CaFileError::Unreadable(path.into(), e))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut text.as_slice()) {
        let der = item.map_err(|e| CaFileError::NotPem(path.into(), e))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CaFileError::BadCertificate(path.into(), e.to_string()))?;
        certs.push(der.as_ref().to_vec());
    }
    if certs.is_empty() {
        return Err(CaFileError::Empty(path.into()));
    }
    Ok(certs)
}
