//! Log setup: tracing, JSON lines by default, with Pingora's `log` records bridged in so that
//! they pass through the same filter and format. Level from `WOPI_GUARD_LOG` (EnvFilter syntax).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber writing to `writer`. A second call does nothing.
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("WOPI_GUARD_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
