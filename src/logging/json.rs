//! JSON lines written field by field: one object per event, `timestamp`, `level`, `target`, then
//! the event's fields (`message` among them) in order. The same shape as tracing-subscriber's
//! flattened JSON, without its per-event map and allocations: the access line is written on every
//! request, and the stock formatter cost several microseconds of it (benches/README.md).

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut time = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        writer.write_str("{\"timestamp\":")?;
        escaped(&mut writer, &time)?;
        write!(writer, ",\"level\":\"{}\",\"target\":", meta.level())?;
        escaped(&mut writer, meta.target())?;
        let mut fields = Fields { out: &mut writer, scratch: String::new(), result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("}\n")
    }
}

/// Fields whose value is a list, recorded as one space-separated string (tracing has no list
/// values) and written as a JSON array of strings.
pub const LIST_FIELDS: [&str; 1] = ["keys_tried"];

struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    scratch: String,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> bool {
        // Records bridged from the `log` crate carry their origin as `log.*` fields; the
        // normalized metadata above already has it.
        if self.result.is_err() || field.name().starts_with("log.") {
            return false;
        }
        self.result = write!(self.out, ",\"{}\":", field.name());
        self.result.is_ok()
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            self.result = self.out.write_fmt(value);
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.key(field) {
            return;
        }
        if !LIST_FIELDS.contains(&field.name()) {
            self.result = escaped(self.out, value);
            return;
        }
        self.result = self.out.write_char('[');
        for (i, item) in value.split_whitespace().enumerate() {
            if self.result.is_ok() && i > 0 {
                self.result = self.out.write_char(',');
            }
            if self.result.is_ok() {
                self.result = escaped(self.out, item);
            }
        }
        if self.result.is_ok() {
            self.result = self.out.write_char(']');
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.scratch.clear();
            self.result = write!(self.scratch, "{value:?}").and_then(|()| escaped(self.out, &self.scratch));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else if self.key(field) {
            self.result = escaped(self.out, &value.to_string());
        }
    }
}

/// `value` as a JSON string.
fn escaped(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let replacement = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.write_str(&value[start..i])?;
        if replacement.is_empty() {
            write!(out, "\\u{:04x}", c as u32)?;
        } else {
            out.write_str(replacement)?;
        }
        start = i + c.len_utf8();
    }
    out.write_str(&value[start..])?;
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_field_kind_makes_valid_json() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let layer = tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(move || sink.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        let client: Option<std::net::IpAddr> = Some([10, 0, 0, 1].into());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                target: "wopi_guard::access",
                text = "quote \" backslash \\ newline \n bell \u{7} é",
                client = client.map(tracing::field::display),
                none_client = None::<std::net::IpAddr>.map(tracing::field::display),
                keys_tried = "k1 k2",
                status = 403u16,
                delta = -5i64,
                ok = true,
                ms = 1.5f64,
                nan = f64::NAN,
                absent = None::<&str>,
                "refused {}",
                "here"
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "wopi_guard::access");
        assert_eq!(v["message"], "refused here");
        assert_eq!(v["text"], "quote \" backslash \\ newline \n bell \u{7} é");
        assert_eq!(v["client"], "10.0.0.1");
        assert!(v.get("none_client").is_none(), "an absent value is omitted: {text}");
        assert_eq!(v["keys_tried"], serde_json::json!(["k1", "k2"]));
        assert_eq!((v["status"].as_u64(), v["delta"].as_i64(), v["ok"].as_bool()), (Some(403), Some(-5), Some(true)));
        assert_eq!((v["ms"].as_f64(), v["nan"].as_str()), (Some(1.5), Some("NaN")));
        assert!(v.get("absent").is_none());
        assert!(v["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{text}");
    }
}
