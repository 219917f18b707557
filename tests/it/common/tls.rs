//! Test certificates made by openssl, and a TLS front that puts a stand-in behind https.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A throw-away certificate authority in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { ca: dir.path().join("ca.pem"), dir };
        let subject = format!("/CN={name}");
        pki.openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject, "-keyout", "ca.key",
            "-out", "ca.pem",
        ]);
        pki
    }

    /// A path in the CA's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl makes the test certificates");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A server certificate for `localhost` and 127.0.0.1 signed by this CA: (chain, key) files.
    pub fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        self.leaf_for(name, "DNS:localhost,IP:127.0.0.1")
    }

    /// A server certificate signed by this CA for the names in `alt_names` (openssl's
    /// subjectAltName syntax, e.g. `DNS:other.example`): (chain, key) files.
    pub fn leaf_for(&self, name: &str, alt_names: &str) -> (PathBuf, PathBuf) {
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), format!("basicConstraints=CA:FALSE\nsubjectAltName={alt_names}\n")).unwrap();
        let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        (self.path(&cert), self.path(&key))
    }

    /// A client that trusts only this CA.
    pub fn client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        reqwest::Client::builder().no_proxy().tls_built_in_root_certs(false).add_root_certificate(root).build().unwrap()
    }
}

/// Terminates TLS on 127.0.0.1 and passes the bytes to a plain backend; stops when dropped.
pub struct TlsFront {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// A front for `backend` serving `cert` / `key`.
    pub async fn start(backend: SocketAddr, cert: &Path, key: &Path) -> TlsFront {
        TlsFront::start_on("127.0.0.1:0".parse().unwrap(), backend, cert, key).await
    }

    /// As [`TlsFront::start`], on `addr` (to take over from a front that was dropped).
    pub async fn start_on(addr: SocketAddr, backend: SocketAddr, cert: &Path, key: &Path) -> TlsFront {
        pingora::tls::install_default_crypto_provider();
        let (chain, private) =
            pingora::tls::load_certs_and_key_files(&cert.display().to_string(), &key.display().to_string())
                .unwrap()
                .expect("a certificate and a key");
        let config =
            pingora::tls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, private).unwrap();
        let acceptor = pingora::tls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { addr, task }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
