//! Stand-ins for the demo and the tests: an office server that signs and publishes discovery,
//! and a WOPI host that records what reached it. Not used by the proxy itself; built with the
//! `demo` feature (on by default). The signer they use is `diagnose`'s, which `sign` needs too.

mod host;
mod http;
mod office;

pub use crate::diagnose::{ProofSet, Signer};
pub use host::{content_digest, FakeHost, Recorded};
pub use http::{free_port, respond, serve, Body, ServerTask};
pub use office::{discovery_xml, DiscoveryBehaviour, FakeOffice};
