//! `public_url`: the base of every URL the office server signs, in both forms signers use.

use super::error::{err, parse_url, ConfigError};

/// `public_url` without a trailing `/`, its port as written, and the other form signers may use:
/// Collabora and .NET drop a default port from the URL they sign, ONLYOFFICE keeps one its host
/// wrote (docs/proof.md §4). The form as configured is tried first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    text: String,
    upper: Box<[u8]>,
    alt_upper: Option<Box<[u8]>>,
}

impl PublicUrl {
    /// The base URL as configured (normalised).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Uppercased bytes, the prefix of every signed URL.
    pub fn upper(&self) -> &[u8] {
        &self.upper
    }

    /// Parses a base URL as `public_url` is parsed: `scheme://host[:port][/prefix]`.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let mut errors = Vec::new();
        validate(&mut errors, text).ok_or_else(|| errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))
    }

    /// The form a proof verified over, in words.
    pub fn form_label(&self, form: crate::proof::UrlForm) -> &'static str {
        use crate::proof::UrlForm;
        match form {
            UrlForm::AsConfigured => "as_configured",
            UrlForm::DefaultPortToggled if self.default_port_written() => "default_port_dropped",
            UrlForm::DefaultPortToggled => "default_port_added",
            UrlForm::QuoteUnescaped => "as_configured_quote_unescaped",
            UrlForm::DefaultPortToggledQuoteUnescaped if self.default_port_written() => {
                "default_port_dropped_quote_unescaped"
            }
            UrlForm::DefaultPortToggledQuoteUnescaped => "default_port_added_quote_unescaped",
        }
    }

    /// True when `public_url` writes its default port (the other form drops it).
    pub fn default_port_written(&self) -> bool {
        self.alt_upper.as_ref().is_some_and(|alt| alt.len() < self.upper.len())
    }

    /// The other form, uppercased: the default port dropped when `public_url` writes it, added
    /// when it does not; `None` for a non-default port.
    pub fn alt_upper(&self) -> Option<&[u8]> {
        self.alt_upper.as_deref()
    }
}

/// The port written in a URL's authority, as text (`url` forgets a default one).
fn written_port(text: &str) -> Option<&str> {
    let rest = text.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_end = match host_port.strip_prefix('[') {
        Some(v6) => v6.find(']')? + 2,
        None => host_port.find(':').unwrap_or(host_port.len()),
    };
    host_port[host_end..].strip_prefix(':').filter(|p| !p.is_empty())
}

/// Validates the `public_url` key.
pub(super) fn validate(errors: &mut Vec<ConfigError>, text: &str) -> Option<PublicUrl> {
    let u = parse_url(errors, "public_url", text)?;
    if u.query().is_some() || u.fragment().is_some() {
        errors.push(err(
            "public_url",
            format!("\"{text}\" must be scheme://host[:port][/prefix], without query or fragment"),
        ));
        return None;
    }
    let host = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    let path = u.path().trim_end_matches('/');
    let default = u.port_or_known_default();
    // `url` drops a default port; whether it was written decides which form is tried first.
    let written_default = u.port().is_none() && written_port(text).is_some();
    let (base, alt) = match (u.port(), default) {
        (Some(port), _) => (format!("{host}:{port}{path}"), None),
        (None, Some(default)) if written_default => (format!("{host}:{default}{path}"), Some(format!("{host}{path}"))),
        (None, Some(default)) => (format!("{host}{path}"), Some(format!("{host}:{default}{path}"))),
        (None, None) => (format!("{host}{path}"), None),
    };
    let upper = |s: &str| s.to_ascii_uppercase().into_bytes().into_boxed_slice();
    Some(PublicUrl { upper: upper(&base), alt_upper: alt.as_deref().map(upper), text: base })
}
