//! wopi-guard: a reverse proxy in front of a WOPI host that forwards only requests whose WOPI
//! proof (`X-WOPI-Proof`, `X-WOPI-ProofOld`, `X-WOPI-TimeStamp`) verifies with the office server's
//! published keys.
//!
//! # Layout
//! - `config`: the TOML file (`raw`), its defaults, and its validation section by section into
//!   typed values (`types`); `error` at the bottom, `load` at the top.
//! - `proof`: pure verification: signed bytes, timestamp window, the three-combination rule,
//!   the `ProofValid` marker.
//! - `keys`: discovery parsing (XML, CryptoAPI blob), the key store, fetching, refreshing (and
//!   the retry schedule of a failing source), cache; the RSA public operation alone
//!   (`raw_rsa`, one per signature and key).
//! - `paths`: which paths are protected (normalised, fail-closed matching).
//! - `policy`: IP allow-lists and forwarded addresses, rate limits, `access_header`, forwarding
//!   headers.
//! - `operation`: which WOPI operation a request is.
//! - `framing`: request shapes refused first: oversized target or headers, ambiguous framing.
//! - `routing`: which `[[routes]]` route a request belongs to, by the host it is for.
//! - `gate`: the admission decision for one request: policy, proof (with the re-fetch on
//!   rotation), and the plan for the upstream request.
//! - `shared`: `[shared]`: rate limits and the replay cache on Redis for several instances (one
//!   script per request, a local negative cache, a circuit breaker and `on_error`; standalone,
//!   Cluster or Sentinel).
//! - `refusal`: every refusal reason and its status, body and label.
//! - `redact`: what of a URL may be logged.
//! - `trust`: how the servers wopi-guard calls are authenticated (CA file, client TLS settings).
//! - `proxy`: Pingora glue: the connection layer under HTTP (the caps, the TLS handshake, the
//!   header deadline), the proxy service (with `forward_auth`; pools and health checks; the
//!   body rate meter), `respond` (every answer wopi-guard writes itself), `access_log` (every
//!   access line), the admin service, the background tasks (discovery refresh, reload), the
//!   state a reload swaps, start errors, TLS certificates, draining on SIGTERM, the server.
//! - `logging`: tracing setup and the JSON line format.
//! - `metrics`: Prometheus counters and histograms, lock-free, rendered on `/metrics`.
//! - `check`, `cli`: the command line.
//! - `diagnose`: `discovery`, `explain` and `sign` for admins (and the office server's signing).
//! - `testkit`: stand-in office server and WOPI host (used by the demo and the tests).
//! - `demo`: `wopi-guard demo`.
//!
//! `testkit` and `demo` (and the HTTP server crates they use) are built only with the `demo`
//! feature, on by default; `--no-default-features` builds the proxy alone.

pub mod check;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diagnose;
pub mod framing;
pub mod gate;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod operation;
pub mod paths;
pub mod policy;
pub mod proof;
pub mod proxy;
pub mod redact;
pub mod refusal;
pub mod routing;
pub mod shared;
#[cfg(feature = "demo")]
pub mod testkit;
pub mod trust;
