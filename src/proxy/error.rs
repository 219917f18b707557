//! Why the proxy cannot start, or a reload is refused: each names the key to change.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigErrors;
use crate::keys::ClientError;
use crate::trust::CaFileError;

/// Why a start or a reload cannot go ahead.
#[derive(Debug)]
pub enum StartError {
    /// The configuration does not validate (a reload's re-read file).
    Config(ConfigErrors),
    /// `upstream`'s host name does not resolve.
    Resolve {
        /// As configured.
        host: String,
        /// As configured.
        port: u16,
        /// `None`: it resolved to no address at all.
        error: Option<std::io::Error>,
    },
    /// `upstream` resolves to one of wopi-guard's own listeners.
    UpstreamIsSelf {
        /// As configured.
        host: String,
        /// As configured.
        port: u16,
        /// What it resolved to.
        addr: SocketAddr,
        /// `listen` or `admin_listen`.
        key: &'static str,
    },
    /// `upstream_tls.ca_file` cannot be used.
    UpstreamCa(CaFileError),
    /// `[tls]`: the listener's certificate and key.
    Certificate(CertError),
    /// The discovery HTTP client (`discovery.ca_file`).
    DiscoveryClient(ClientError),
    /// A listener's address cannot be bound.
    Bind {
        /// `listen` or `admin_listen`.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the bind said.
        error: std::io::Error,
    },
    /// The TLS library refused the listener's settings.
    ListenerTls(String),
    /// A reload was asked of a server that is not running, or stopped during it.
    NotRunning,
    /// `[shared]`: Redis could not be reached (the URL as shown, without its password).
    SharedState {
        /// `scheme://***@host:port`.
        redis: String,
        /// What failed.
        error: crate::shared::CallError,
    },
}

/// Why `tls.cert_file` / `tls.key_file` cannot be served.
#[derive(Debug)]
pub struct CertError {
    /// `tls.cert_file`.
    pub cert: PathBuf,
    /// `tls.key_file`.
    pub key: PathBuf,
    /// What is wrong.
    pub problem: CertProblem,
}

/// What is wrong with a certificate and key pair.
#[derive(Debug)]
pub enum CertProblem {
    /// A file cannot be read or parsed (the TLS library's words).
    Unreadable(String),
    /// No certificate in the one, or no private key in the other.
    Missing,
    /// No crypto provider could be installed.
    NoProvider,
    /// The key does not belong to the certificate (the TLS library's words).
    Mismatch(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cert, key) = (self.cert.display(), self.key.display());
        match &self.problem {
            CertProblem::Unreadable(e) => write!(f, "tls: cannot read {cert} / {key}: {e}"),
            CertProblem::Missing => {
                write!(f, "tls: {cert} holds no certificate or {key} no private key (PEM expected)")
            }
            CertProblem::NoProvider => f.write_str("tls: no crypto provider installed"),
            CertProblem::Mismatch(e) => write!(f, "tls: {cert} and {key} are not a usable pair: {e}"),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(errors) => write!(f, "{errors}"),
            StartError::Resolve { host, port, error: Some(e) } => {
                write!(f, "upstream: cannot resolve {host}:{port}: {e}")
            }
            StartError::Resolve { host, port, error: None } => {
                write!(f, "upstream: {host}:{port} resolves to no address")
            }
            StartError::UpstreamIsSelf { host, port, addr, key } => write!(
                f,
                "upstream: {host}:{port} resolves to {addr}, wopi-guard's own `{key}`: every request would come back to wopi-guard; set upstream to the WOPI host's address"
            ),
            StartError::UpstreamCa(e) => write!(f, "upstream_tls.ca_file: {e}"),
            StartError::Certificate(e) => write!(f, "{e}"),
            StartError::DiscoveryClient(e) => write!(f, "{e}"),
            StartError::Bind { key, addr, error } => {
                write!(f, "{key}: cannot listen on {addr}: {error}; choose a free address")
            }
            StartError::ListenerTls(e) => write!(f, "tls: {e}"),
            StartError::NotRunning => f.write_str("the server is not running"),
            StartError::SharedState { redis, error } => {
                write!(f, "shared.redis: cannot use {redis}: {error}; check the address, password and TLS settings")
            }
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigErrors> for StartError {
    fn from(e: ConfigErrors) -> Self {
        StartError::Config(e)
    }
}

impl From<CertError> for StartError {
    fn from(e: CertError) -> Self {
        StartError::Certificate(e)
    }
}

impl From<ClientError> for StartError {
    fn from(e: ClientError) -> Self {
        StartError::DiscoveryClient(e)
    }
}
