//! Stand-ins for the demo and the tests: an office server that signs and publishes discovery,
//! and a WOPI host that records what reached it. Not used by the proxy itself.

mod host;
mod http;
mod office;
mod signer;

pub use host::{content_digest, FakeHost, Recorded};
pub use http::{free_port, respond, serve, Body, ServerTask};
pub use office::{discovery_xml, DiscoveryBehaviour, FakeOffice};
pub use signer::{ProofSet, Signer};
