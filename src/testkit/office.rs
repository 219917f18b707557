//! A stand-in office server: a key pair (and optionally an old one), its discovery document,
//! key rotation, and switches to make discovery fail in the ways real ones do.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

use super::http::{respond, serve, ServerTask};
use crate::diagnose::{ProofSet, Signer};

/// How `/hosting/discovery` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryBehaviour {
    /// The document with the current (and old) key.
    Keys,
    /// 503, as an office server that is down behind its load balancer.
    Unavailable,
    /// A document without `<proof-key>` (no key configured).
    NoProofKey,
    /// The document, but only after this long.
    Slow(std::time::Duration),
    /// A document of this many bytes (valid XML, padded with a comment).
    Huge(usize),
    /// Not XML.
    Malformed,
    /// A redirect to itself.
    RedirectLoop,
}

struct State {
    current: Arc<Signer>,
    old: Option<Arc<Signer>>,
    behaviour: DiscoveryBehaviour,
    /// Another node behind the same URL: every other fetch answers with its key.
    other_node: Option<Arc<Signer>>,
    /// A document served instead of the keys' (keys this stand-in cannot sign with).
    document: Option<String>,
    /// The Host header of every discovery request.
    hosts: Vec<String>,
}

/// A running stand-in office server.
pub struct FakeOffice {
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
    bits: usize,
    server: ServerTask,
}

impl FakeOffice {
    /// Starts on 127.0.0.1 with a fresh `bits`-bit key and no old key.
    pub async fn start(bits: usize) -> FakeOffice {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in office server");
        FakeOffice::start_on(listener, Signer::generate(bits)).await
    }

    /// Starts on `listener` with `key` as its current key and no old key.
    pub async fn start_on(listener: TcpListener, key: Signer) -> FakeOffice {
        let bits = key.modulus().len() * 8;
        let state = Arc::new(Mutex::new(State {
            current: Arc::new(key),
            old: None,
            behaviour: DiscoveryBehaviour::Keys,
            other_node: None,
            document: None,
            hosts: Vec::new(),
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (state.clone(), fetches.clone());
        let server = serve(listener, move |req| {
            let (state, fetches) = (s.clone(), f.clone());
            async move {
                if req.uri().path() != "/hosting/discovery" {
                    return respond(404, "text/plain", "not found\n");
                }
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                let (behaviour, xml) = {
                    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
                    state.hosts.push(host.to_string());
                    let xml = match (&state.document, &state.other_node) {
                        (Some(document), _) => document.clone(),
                        (None, Some(other)) if n % 2 == 1 => discovery_xml(other, None),
                        _ => discovery_xml(&state.current, state.old.as_deref()),
                    };
                    (state.behaviour, xml)
                };
                match behaviour {
                    DiscoveryBehaviour::Keys => respond(200, "text/xml", xml),
                    DiscoveryBehaviour::NoProofKey => respond(200, "text/xml", discovery_xml_without_key()),
                    DiscoveryBehaviour::Unavailable => respond(503, "text/plain", "unavailable\n"),
                    DiscoveryBehaviour::Slow(wait) => {
                        tokio::time::sleep(wait).await;
                        respond(200, "text/xml", xml)
                    }
                    DiscoveryBehaviour::Huge(size) => {
                        let padding = "x".repeat(size.saturating_sub(xml.len() + 7));
                        respond(200, "text/xml", format!("{xml}<!--{padding}-->"))
                    }
                    DiscoveryBehaviour::Malformed => respond(200, "text/xml", "<wopi-discovery><net-zone <<"),
                    DiscoveryBehaviour::RedirectLoop => hyper::Response::builder()
                        .status(302)
                        .header("location", "/hosting/discovery")
                        .header("content-length", 0)
                        .body(super::http::full(""))
                        .expect("valid response parts"),
                }
            }
        });
        FakeOffice { state, fetches, bits, server }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/hosting/discovery`.
    pub fn discovery_url(&self) -> String {
        format!("http://{}/hosting/discovery", self.server.addr)
    }

    /// The key signing `X-WOPI-Proof` now.
    pub fn current(&self) -> Arc<Signer> {
        self.lock().current.clone()
    }

    /// The key signing `X-WOPI-ProofOld`, when one is published.
    pub fn old(&self) -> Option<Arc<Signer>> {
        self.lock().old.clone()
    }

    /// Rotates: the current key becomes the old one, a fresh key becomes current.
    pub fn rotate(&self) {
        let fresh = Arc::new(Signer::generate(self.bits));
        let mut state = self.lock();
        let previous = std::mem::replace(&mut state.current, fresh);
        state.old = Some(previous);
    }

    /// Serves `current` and `old` from now on (an announced rotation when `old` is the key in
    /// force, a replaced key when it is not).
    pub fn set_keys(&self, current: Arc<Signer>, old: Option<Arc<Signer>>) {
        let mut state = self.lock();
        state.current = current;
        state.old = old;
    }

    /// Behaves as two nodes with their own keys behind one balanced URL: every other fetch
    /// answers with `other`'s key (no old key). `None`: one node again.
    pub fn set_other_node(&self, other: Option<Arc<Signer>>) {
        self.lock().other_node = other;
    }

    /// Serves `document` as discovery from now on (`None`: the keys' document again).
    pub fn set_document(&self, document: Option<String>) {
        self.lock().document = document;
    }

    /// The Host header of every discovery request so far.
    pub fn hosts(&self) -> Vec<String> {
        self.lock().hosts.clone()
    }

    /// Changes how discovery answers from now on.
    pub fn set_behaviour(&self, behaviour: DiscoveryBehaviour) {
        self.lock().behaviour = behaviour;
    }

    /// How many times discovery was requested.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Signs as the office server does: Proof with the current key, ProofOld with the old key
    /// (the current one again when there is no old key, as current Collabora does).
    pub fn sign(&self, url: &str, ticks: i64) -> ProofSet {
        let (current, old) = {
            let state = self.lock();
            (state.current.clone(), state.old.clone().unwrap_or_else(|| state.current.clone()))
        };
        ProofSet::sign(url, ticks, &current, &old)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Collabora-style discovery document for these keys.
pub fn discovery_xml(current: &Signer, old: Option<&Signer>) -> String {
    let mut key = format!(
        r#"value="{}" modulus="{}" exponent="{}""#,
        current.blob_b64(),
        STANDARD.encode(current.modulus()),
        STANDARD.encode(current.exponent())
    );
    if let Some(old) = old {
        key.push_str(&format!(
            r#" oldvalue="{}" oldmodulus="{}" oldexponent="{}""#,
            old.blob_b64(),
            STANDARD.encode(old.modulus()),
            STANDARD.encode(old.exponent())
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<wopi-discovery>
  <net-zone name="external-http">
    <app name="writer"><action default="true" ext="odt" name="edit" urlsrc="http://office.invalid/browser/dist/cool.html?"/></app>
  </net-zone>
  <proof-key {key}/>
</wopi-discovery>
"#
    )
}

fn discovery_xml_without_key() -> String {
    r#"<?xml version="1.0" encoding="utf-8"?>
<wopi-discovery><net-zone name="external-http"><app name="writer"/></net-zone></wopi-discovery>
"#
    .to_string()
}
