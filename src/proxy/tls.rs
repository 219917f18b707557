//! Certificates at run time: the listener's certificate behind a resolver a reload can swap, and
//! the CA list an https upstream is checked against.

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::path::Path;
use std::sync::Arc;

use super::error::{CertError, CertProblem, StartError};
use crate::trust::{read_ca_file, ClientTls};

/// The listener's certificate; every handshake reads the one in force.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `cert_file` / `key_file`.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, CertError> {
        Ok(CertResolver { current: ArcSwap::from_pointee(load_certified_key(cert_file, key_file)?) })
    }

    /// Serves `key` from the next handshake on; connections already open keep theirs.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a PEM certificate chain and its private key, and checks that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, CertError> {
    let error = |problem| CertError { cert: cert_file.into(), key: key_file.into(), problem };
    let (cert, key) = (cert_file.display().to_string(), key_file.display().to_string());
    let loaded = pingora::tls::load_certs_and_key_files(&cert, &key)
        .map_err(|e| error(CertProblem::Unreadable(e.to_string())))?;
    let Some((chain, private)) = loaded else {
        return Err(error(CertProblem::Missing));
    };
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or_else(|| error(CertProblem::NoProvider))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| error(CertProblem::Mismatch(e.to_string())))
}

/// Applies `[upstream_tls]` to an https peer: the CA file's certificates instead of the system's
/// roots, or no verification at all when explicitly asked.
pub fn apply_upstream_tls(peer: &mut HttpPeer, tls: &ClientTls) -> Result<(), StartError> {
    if tls.insecure_skip_verify {
        peer.options.verify_cert = false;
        peer.options.verify_hostname = false;
    }
    if let Some(path) = &tls.ca_file {
        let certs = read_ca_file(path).map_err(StartError::UpstreamCa)?;
        // Pingora pools upstream connections by a hash that leaves the CA list out: without this,
        // a connection verified under the CAs before a reload would be reused after it.
        let mut trust = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&certs, &mut trust);
        peer.group_key = std::hash::Hasher::finish(&trust);
        // read_ca_file parsed each one, so `parse_x509` (which panics on bad DER) is safe here.
        let ca: Vec<WrappedX509> = certs.into_iter().map(|der| WrappedX509::new(der, parse_x509)).collect();
        peer.options.ca = Some(Arc::from(ca.into_boxed_slice()));
    }
    Ok(())
}
