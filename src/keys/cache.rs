//! The optional cache file: last-known-good keys survive a restart while discovery is down.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

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

/// Reads the cache, keeping the sources still configured (matched by URL). Each unusable
/// entry is reported and skipped; a missing file is not an error.
pub fn load_cache(path: &Path, urls: &[String]) -> Result<Vec<SourceKeys>, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: CacheFile =
        serde_json::from_slice(&text).map_err(|e| format!("{} is not a wopi-guard key cache: {e}", path.display()))?;
    let mut out = Vec::new();
    for entry in file.sources {
        let Some(index) = urls.iter().position(|u| *u == entry.url) else { continue };
        let current = key(&entry.current).map_err(|e| format!("cached key for {}: {e}", entry.url))?;
        let old =
            entry.old.as_ref().map(key).transpose().map_err(|e| format!("cached old key for {}: {e}", entry.url))?;
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

fn key(cached: &CachedKey) -> Result<ProofKey, String> {
    let n = STANDARD.decode(&cached.modulus).map_err(|e| e.to_string())?;
    let e = STANDARD.decode(&cached.exponent).map_err(|e| e.to_string())?;
    ProofKey::from_components(&n, &e).map_err(|e| e.to_string())
}
