//! Reading the file, layering the environment and flags over it, and reporting unknown keys and
//! wrong types before [`super::validate`] checks the values.

use super::error::{err, key_path, ConfigErrors};
use super::layers::{apply, Override};
use super::raw::RawConfig;
use super::types::Config;
use super::validate::validate;

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        Config::load_layered(Some(path), &[])
    }

    /// Reads the file (if any), applies `overrides` (environment, then flags: later wins) and
    /// validates the result. Problems with an overridden key name its origin.
    pub fn load_layered(path: Option<&std::path::Path>, overrides: &[Override]) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors(vec![err(
                    "(file)",
                    format!("cannot read {}: {e}; pass an existing TOML file to --config", path.display()),
                )])
            })?,
            None => String::new(),
        };
        Config::from_toml_with(&text, overrides).map_err(|mut errors| {
            if let Some(path) = path {
                for e in errors.0.iter_mut().filter(|e| e.message.starts_with("not valid TOML")) {
                    e.message = format!("{}: {}", path.display(), e.message);
                }
            }
            errors
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml_with(text, &[])
    }

    /// Parses TOML text, applies `overrides`, validates.
    pub fn from_toml_with(text: &str, overrides: &[Override]) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => return Err(ConfigErrors(vec![syntax_error(text, &e)])),
        };
        apply(&mut table, overrides, &mut errors);
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(key_path(&path.to_string()));
        let layered = table.clone();
        let ignored = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut note_unknown);
        let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(ignored);
        for key in unknown {
            errors.push(err(&key, "unknown key; remove it or check its spelling (see docs/configuration.md)".into()));
        }
        let validated = match raw {
            Ok(raw) => validate(raw, &layered, &mut errors),
            Err(e) => {
                let key = key_path(&e.path().to_string());
                let key = if key == "." || key.is_empty() { "(file)".to_string() } else { key };
                errors.push(err(&key, format!("wrong type: {}", without_values(&e.inner().to_string()))));
                None
            }
        };
        for e in &mut errors {
            if let Some(o) =
                overrides.iter().rev().find(|o| e.key == o.key() || e.key.starts_with(&format!("{}[", o.key())))
            {
                e.message.push_str(&format!(" (set by {})", o.origin));
            }
        }
        match validated {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// A TOML syntax error by line, column and key, never with the source line: it may be a
/// `redis` URL with its password, or a `hash_key`.
fn syntax_error(text: &str, e: &toml::de::Error) -> super::error::ConfigError {
    let at = e.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let key = key_at(text, line).unwrap_or_else(|| "(file)".to_string());
    err(&key, format!("not valid TOML at line {line}, column {column}: {}", e.message().trim()))
}

/// The dotted key written on `line` (1-based) of `text`, with the table above it: `shared.redis`.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let own = lines.get(line.checked_sub(1)?)?;
    let name = |s: &str| {
        let s = s.trim().trim_matches('"');
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .then(|| s.to_string())
    };
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
            .or_else(|| l.strip_prefix('[')?.split(']').next())?;
        name(inner)
    });
    let trimmed = own.trim();
    if trimmed.starts_with('[') {
        return name(trimmed.trim_start_matches('[').split(']').next()?);
    }
    // Only text before an `=` is a key: a line without one (a bare value, perhaps a secret inside
    // a multi-line array) names no key.
    let (key, _) = trimmed.split_once('=')?;
    let key = name(key)?;
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key,
    })
}

/// serde's type error without the value it quotes (`invalid type: string "…", expected a
/// boolean` → `a string, expected a boolean`): the value may be a credential.
fn without_values(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        // Other serde messages name keys and variants, not values; still cut any quoted part.
        return message.split(['`', '"']).step_by(2).collect::<Vec<_>>().join("…");
    };
    let (unexpected, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
    let kind = unexpected.split(['`', '"']).next().unwrap_or("").trim();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {kind}, expected {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_value_in_a_syntax_or_type_error() {
        let text = "listen = \"127.0.0.1:8080\"\n[shared]\nredis = \"redis://:S3cretPass@h:6379\nhash_key = 1\n";
        let e = Config::from_toml(text).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains("S3cret"), "{shown}");
        assert_eq!(e.0[0].key, "shared.redis", "{shown}");
        assert!(shown.contains("line 3, column"), "{shown}");

        let e = Config::from_toml("[shared]\nredis = \"redis://h\"\nhash_key = [\"0123456789abcdefSECRET\"]\n")
            .unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains("SECRET") && shown.contains("shared.hash_key"), "{shown}");
        let e = Config::from_toml("[shared]\nredis = 6379\n").unwrap_err();
        assert!(e.to_string().contains("shared.redis: wrong type: an integer, expected a string"), "{e}");
        let e = Config::from_toml("[proof]\nmax_age = \"x\" \"y\"\n").unwrap_err();
        assert_eq!(e.0[0].key, "proof.max_age", "{e}");
        // A line with no `=` names no key, even one that looks like a name (a bare secret).
        let e = Config::from_toml("[shared]\nredis = [\n  \"a\",\n  S3CRETVALUE\n]\n").unwrap_err();
        assert!(!e.to_string().contains("S3CRETVALUE"), "{e}");
    }

    #[test]
    fn the_file_is_named_in_a_syntax_error() {
        let dir = std::env::temp_dir().join(format!("wopi-guard-syntax-{}", std::process::id()));
        std::fs::write(&dir, "[shared]\nredis = \"redis://:pw@h\n").unwrap();
        let e = Config::load(&dir).unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(e.contains(&dir.display().to_string()) && e.contains("line 2") && !e.contains("pw@"), "{e}");
    }
}

#[cfg(test)]
mod fuzz_found {
    /// From `make fuzz` (config): a table named by the empty key, `[""]`, is valid TOML; the
    /// error about it named no key.
    #[test]
    fn a_table_with_the_empty_name_is_reported_under_a_key() {
        let text = "[divbovery]\nurls = [\"\"]\n[ip]\ntrusted_proxies = [\"128.0.0.1/32\"]\n [\"\"]\nrefreshccccs = 500\nmax_ige = \"210s\"\n";
        let errors = crate::config::Config::from_toml(text).unwrap_err();
        for e in &errors.0 {
            assert!(!e.key.is_empty() && !e.message.is_empty(), "{e:?}");
        }
        assert!(errors.0.iter().any(|e| e.key == "\"\""), "{:?}", errors.0);
    }
}
