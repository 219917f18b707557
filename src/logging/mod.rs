//! Log setup: tracing, JSON lines by default, with Pingora's `log` records bridged in so that
//! they pass through the same filter and format. Level from `WOPI_GUARD_LOG` (EnvFilter syntax).
//!
//! Pingora's own debug and trace lines print whole request headers (tokens, proofs) and are
//! never let through, whatever the filter says: a security proxy must not log secrets because
//! someone turned the level up.

mod json;

pub use json::JsonLines;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The filter when `WOPI_GUARD_LOG` is unset: our lines at info, Pingora's at warn.
pub const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora=warn";

/// False for the records that may carry secrets: Pingora's below info.
fn never_secret(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("pingora") && *meta.level() > Level::INFO)
}

/// Installs the global subscriber writing to `writer`, filtering by `WOPI_GUARD_LOG` when set,
/// else by `level` (the configuration's `log.level`), else [`DEFAULT_FILTER`]. A second call does
/// nothing.
pub fn init<W>(format: LogFormat, level: Option<&str>, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let configured = EnvFilter::try_from_env("WOPI_GUARD_LOG")
        .ok()
        .or_else(|| level.filter(|l| *l != DEFAULT_FILTER).and_then(|l| EnvFilter::try_new(l).ok()));
    let quiet = configured.is_none();
    let env = configured.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let filter = env.and(filter_fn(never_secret));
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(writer);
            registry.with(layer.with_filter(filter)).try_init()
        }
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(writer).with_filter(filter)).try_init()
        }
    };
    if quiet {
        // Nothing below info is wanted from `log` users (Pingora, reqwest) under the default
        // filter: stop their debug records before they reach the bridge, on every request.
        log::set_max_level(log::LevelFilter::Info);
    }
}
