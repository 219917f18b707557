//! Fetching one discovery document: bounded in time and size, redirects limited.

use futures_util::StreamExt;
use std::fmt;
use std::time::Duration;

use crate::trust::{read_ca_file, CaFileError, ClientTls};

/// Bounds on one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Whole-request timeout (connect, headers and body).
    pub timeout: Duration,
    /// Largest accepted document.
    pub max_bytes: usize,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connection, TLS, redirect or protocol failure.
    Transport(String),
    /// The whole fetch took longer than the timeout.
    Timeout,
    /// A non-2xx status.
    Status(u16),
    /// The document is larger than the cap.
    TooLarge(usize),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Transport(e) => write!(f, "transport error: {e}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::TooLarge(cap) => write!(f, "document larger than {cap} bytes"),
        }
    }
}

/// Why the discovery HTTP client cannot be built.
#[derive(Debug)]
pub enum ClientError {
    /// `discovery.ca_file` cannot be used.
    CaFile(CaFileError),
    /// The TLS backend refused the settings.
    Build(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, detail): (&str, &dyn fmt::Display) = match self {
            ClientError::CaFile(e) => ("discovery.ca_file", e),
            ClientError::Build(e) => ("discovery: cannot build the HTTP client", e),
        };
        write!(f, "{what}: {detail}")
    }
}

impl std::error::Error for ClientError {}

/// An HTTP client for discovery: no connection pool (fetches are rare, and the client is used
/// from more than one runtime), at most 3 redirects, and https checked per `tls`: the CA file's
/// certificates only, or the system's roots, or (only when asked) nothing.
pub fn discovery_client(tls: &ClientTls) -> Result<reqwest::Client, ClientError> {
    discovery_client_to(tls, None)
}

/// As [`discovery_client`], with `host` connected at `address` (`resolve_all`): the Host header
/// and the certificate name checked stay `host`'s, the port stays the URL's.
pub fn discovery_client_to(
    tls: &ClientTls,
    pinned: Option<(&str, std::net::IpAddr)>,
) -> Result<reqwest::Client, ClientError> {
    client(tls, pinned, reqwest::redirect::Policy::limited(3))
}

/// An HTTP client for `[health]` checks: as [`discovery_client`], but a redirect is never
/// followed: the member's own answer (a 3xx is below 500: up) is what is judged, not another
/// server's.
pub fn health_client(tls: &ClientTls) -> Result<reqwest::Client, ClientError> {
    client(tls, None, reqwest::redirect::Policy::none())
}

fn client(
    tls: &ClientTls,
    pinned: Option<(&str, std::net::IpAddr)>,
    redirect: reqwest::redirect::Policy,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(redirect)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("wopi-guard/", env!("CARGO_PKG_VERSION")))
        .tls_built_in_root_certs(false);
    let roots = match (&tls.ca_file, tls.insecure_skip_verify) {
        (_, true) => {
            builder = builder.danger_accept_invalid_certs(true);
            Vec::new()
        }
        (Some(path), false) => read_ca_file(path).map_err(ClientError::CaFile)?,
        (None, false) => system_roots(),
    };
    if let Some((host, ip)) = pinned {
        // Port 0: the URL's port is used.
        builder = builder.resolve(host, std::net::SocketAddr::new(ip, 0));
    }
    for der in roots {
        match reqwest::Certificate::from_der(&der) {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(e) => tracing::warn!(error = %e, "skipping a CA certificate the HTTP client cannot use"),
        }
    }
    builder.build().map_err(|e| ClientError::Build(error_chain(&e)))
}

/// The system's CA certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured), as DER.
fn system_roots() -> Vec<Vec<u8>> {
    let roots: Vec<Vec<u8>> = match pingora::tls::load_native_certs() {
        Ok(certs) => certs.into_iter().map(|c| c.as_ref().to_vec()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's CA certificates");
            Vec::new()
        }
    };
    if roots.is_empty() {
        tracing::warn!("no system CA certificates found: https discovery will fail; install ca-certificates or set discovery.ca_file");
    }
    roots
}

/// GETs `url` and returns the body, refusing anything over `limits.max_bytes`.
pub async fn fetch_discovery(client: &reqwest::Client, url: &str, limits: FetchLimits) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(limits.timeout, fetch(client, url, limits.max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn fetch(client: &reqwest::Client, url: &str, cap: usize) -> Result<Vec<u8>, FetchError> {
    let transport = |e: reqwest::Error| FetchError::Transport(error_chain(&e));
    let response = client.get(url).send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|len| len > cap as u64) {
        return Err(FetchError::TooLarge(cap));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(transport)?;
        if body.len() + chunk.len() > cap {
            return Err(FetchError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `e` and its sources, joined by ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
