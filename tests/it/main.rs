//! The integration tests, as one binary (each test binary links all of Pingora: one link
//! instead of twenty is most of the build time and disk of `make test`). Two stay apart, each
//! for a process-wide setting: `tests/logs.rs` (a trace-level log subscriber for every crate)
//! and `tests/state_memory.rs` (a counting global allocator).

mod common;

mod bodies;
mod budgets;
mod cli;
mod config_files;
mod diagnose;
mod discovery;
mod faults;
mod fetch;
mod floods;
mod forward_auth;
mod fronts;
mod header_trust;
mod hostile;
mod judged;
mod key_trust;
mod metrics;
mod php_host;
mod policy;
mod pool;
mod precedence;
mod prometheus;
mod properties;
mod proxy;
mod reload;
mod replay;
mod routes;
mod shared;
mod signals;
mod tls;
mod vectors;
mod verify;
