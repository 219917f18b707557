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
        Config::from_toml_with(&text, overrides)
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
            Err(e) => {
                return Err(ConfigErrors(vec![err("(file)", format!("not valid TOML: {}", e.to_string().trim()))]));
            }
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
                errors.push(err(&key, format!("wrong type: {}", e.inner().to_string().trim())));
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
