//! The optional cache file: last-known-good keys survive a restart while discovery is down.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::discovery::FormError;
use super::key::ProofKey;
use super::store::{KeySnapshot, SourceKeys};

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    sources: Vec<CachedSource>,
}

#[derive(Serialize, Deserialize)]
struct CachedSource {
    url: String,
    fetched_at_unix: u64,
    current: CachedKey,
    old: Option<CachedKey>,
}

#[derive(Serialize, Deserialize)]
struct CachedKey {
    modulus: String,
    exponent: String,
}

/// Writes every source's keys (public keys only) atomically: a temporary file, then a rename.
pub fn save_cache(path: &Path, keys: &KeySnapshot) -> std::io::Result<()> {
    let file = CacheFile {
        version: 1,
        sources: keys
            .sources
            .iter()
            .map(|s| CachedSource {
                url: s.url.to_string(),
                fetched_at_unix: s.fetched_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
                current: cached(&s.current),
                old: s.old.as_ref().map(cached),
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Why the cache file was not used. Keys are then fetched as on a first start.
#[derive(Debug)]
pub enum CacheError {
    /// The file exists but cannot be read.
    Read(PathBuf, std::io::Error),
    /// The file is not a key cache.
    Format(PathBuf, serde_json::Error),
    /// A cached key of `url` is unusable (`old`: the old key).
    Key {
        /// Its source.
        url: String,
        /// Whether it is the old key.
        old: bool,
        /// Why.
        error: FormError,
    },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            CacheError::Format(path, e) => write!(f, "{} is not a wopi-guard key cache: {e}", path.display()),
            CacheError::Key { url, old, error } => {
                write!(f, "cached {}key for {url}: {error}", if *old { "old " } else { "" })
            }
        }
    }
}

/// Reads the cache, keeping the sources still configured (matched by URL). A missing file is
/// not an error; any unusable entry rejects the whole file.
pub fn load_cache(path: &Path, urls: &[String]) -> Result<Vec<SourceKeys>, CacheError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::Read(path.to_owned(), e)),
    };
    let file: CacheFile = serde_json::from_slice(&text).map_err(|e| CacheError::Format(path.to_owned(), e))?;
    let mut out = Vec::new();
    for entry in file.sources {
        let Some(index) = urls.iter().position(|u| *u == entry.url) else { continue };
        let url = &entry.url;
        let unusable = |old: bool| move |error| CacheError::Key { url: url.clone(), old, error };
        let current = key(&entry.current).map_err(unusable(false))?;
        let old = entry.old.as_ref().map(key).transpose().map_err(unusable(true))?;
        out.push(SourceKeys {
            index,
            url: Arc::from(entry.url.as_str()),
            current,
            old,
            fetched_at: UNIX_EPOCH + Duration::from_secs(entry.fetched_at_unix),
        });
    }
    Ok(out)
}

fn cached(key: &ProofKey) -> CachedKey {
    CachedKey { modulus: STANDARD.encode(key.modulus()), exponent: STANDARD.encode(key.exponent()) }
}

fn key(cached: &CachedKey) -> Result<ProofKey, FormError> {
    let b64 = |text: &str| STANDARD.decode(text).map_err(|e| FormError::NotBase64(e.to_string()));
    ProofKey::from_components(&b64(&cached.modulus)?, &b64(&cached.exponent)?).map_err(FormError::Key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyError;

    const URL: &str = "https://office.example/hosting/discovery";

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("keys.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn each_unusable_cache_says_why() {
        let dir = std::env::temp_dir().join(format!("wopi-guard-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let urls = [URL.to_string()];
        assert!(load_cache(&dir.join("absent.json"), &urls).unwrap().is_empty());

        let path = write(&dir, "{ not json");
        assert!(matches!(load_cache(&path, &urls), Err(CacheError::Format(p, _)) if p == path));

        let good = STANDARD.encode([0xc5u8; 256]);
        let entry = |old: &str| {
            format!(
                r#"{{"version":1,"sources":[{{"url":"{URL}","fetched_at_unix":1,"current":{{"modulus":"{good}","exponent":"AQAB"}},"old":{old}}}]}}"#
            )
        };
        let path = write(&dir, &entry(r#"{"modulus":"AQAB","exponent":"AQAB"}"#));
        let e = load_cache(&path, &urls).unwrap_err();
        assert!(
            matches!(&e, CacheError::Key { url, old: true, error: FormError::Key(KeyError::Size(17)) } if url == URL),
            "{e:?}"
        );
        assert_eq!(e.to_string(), format!("cached old key for {URL}: 17-bit modulus (accepted: 1024 to 4096 bits)"));

        let path = write(&dir, &entry(r#"{"modulus":"%%","exponent":"AQAB"}"#));
        assert!(matches!(
            load_cache(&path, &urls),
            Err(CacheError::Key { old: true, error: FormError::NotBase64(_), .. })
        ));

        let path = write(&dir, &entry("null"));
        let keys = load_cache(&path, &urls).unwrap();
        assert_eq!((keys.len(), keys[0].old.is_none()), (1, true));
        // A source no longer configured is skipped, not an error.
        assert!(load_cache(&path, &["https://other.example/hosting/discovery".into()]).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
