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

/// Checks a filter (`log.level`, `WOPI_GUARD_LOG`) strictly: every comma-separated directive is
/// a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or `target=level`. EnvFilter itself
/// reads a bare word such as `warning` as a target name and then logs nothing else at all.
pub fn check_filter(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |l: &str| LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    for directive in text.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(format!("\"{directive}\" names no target before '='")),
            None => directive,
        };
        if !is_level(level) {
            return Err(format!(
                "\"{}\" is not a level; use one of {} (or target=level, e.g. \"info,pingora=warn\")",
                level.trim(),
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(text).map(|_| ()).map_err(|e| e.to_string())
}

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
    // A bad WOPI_GUARD_LOG is refused at start (`main` checks it with `check_filter`).
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
            // Colours only for a person at a terminal: never escape codes in a file or a journal.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let layer = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer);
            registry.with(layer.with_filter(filter)).try_init()
        }
    };
    if quiet {
        // Nothing below info is wanted from `log` users (Pingora, reqwest) under the default
        // filter: stop their debug records before they reach the bridge, on every request.
        log::set_max_level(log::LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn filters_are_levels_or_target_levels() {
        for good in ["info", "WARN", "debug,pingora=warn", "wopi_guard::access=info, off", DEFAULT_FILTER_FOR_TEST] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        for bad in ["warning", "verbose", "info,pingora=loud", "=info", "", "info,"] {
            assert!(check_filter(bad).is_err(), "{bad:?}");
        }
        assert!(check_filter("warning").unwrap_err().contains("\"warning\" is not a level"));
    }

    const DEFAULT_FILTER_FOR_TEST: &str = super::DEFAULT_FILTER;
}
