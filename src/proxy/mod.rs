//! Pingora: the proxy service (behind the connection caps and the header deadline), the admin
//! service, the background tasks (discovery refresh, reload), the state a reload swaps, and the
//! server that runs them.

mod access_log;
mod admin;
mod body_rate;
mod connections;
mod delegate;
mod drain;
mod error;
mod forward_auth;
mod handshake;
mod head_deadline;
mod health;
mod pool;
mod respond;
mod runtime;
mod scratch;
mod server;
mod service;
mod tasks;
mod tls;

pub use admin::AdminApp;
pub use body_rate::{BodyRate, TooSlow, BODY_RATE_WINDOW};
pub use connections::{ConnectionApp, OpenConnections, OverCap, Slot};
pub use drain::{Drain, InFlight, ProcessSignals};
pub use error::{CertError, CertProblem, StartError};
pub use head_deadline::GuardedStream;
pub use pool::Pool;
pub use runtime::{preflight, Active, Shared};
pub use server::{run, run_with, ShutdownHandle, ShutdownTrigger};
pub use service::{upstream_headers, RequestCtx, Stage, WopiProxy};
pub use tasks::{ConfigLoader, ReloadListener, ReloadSource, ReloadTrigger};
pub use tls::{load_certified_key, CertResolver};
