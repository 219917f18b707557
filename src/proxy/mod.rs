//! Pingora: the proxy service, the admin service and the server that runs them.

mod admin;
mod server;
mod service;

pub use admin::AdminApp;
pub use server::{run, ShutdownHandle, ShutdownTrigger};
pub use service::{RequestCtx, WopiProxy};
