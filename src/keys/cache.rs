//! The optional cache file: last-known-good keys survive a restart while discovery is down.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::discovery::FormError;
use super::key::{Fingerprint, ProofKey};
use super::store::{CachedSource, KeyStore};
use super::trust::TrustedSets;

/// Version 1, extended compatibly: a wopi-guard that knows only `current` and `old` reads the
/// latest answer and ignores the rest.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    sources: Vec<CachedEntry>,
    /// `keys.trust = "rotation"`: the fingerprints trusted per discovery URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    trusted: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct CachedEntry {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<IpAddr>,
    fetched_at_unix: u64,
    current: CachedKey,
    old: Option<CachedKey>,
    /// Earlier answers kept by `keys.retention`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retained: Vec<CachedAnswer>,
}

#[derive(Serialize, Deserialize)]
struct CachedAnswer {
    current: CachedKey,
    old: Option<CachedKey>,
    last_seen_unix: u64,
}

#[derive(Serialize, Deserialize)]
struct CachedKey {
    modulus: String,
    exponent: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Writes every source's answers (public keys only) and the `rotation` trusted sets
/// atomically: a temporary file, then a rename.
pub fn save_cache(path: &Path, store: &KeyStore) -> std::io::Result<()> {
    let file = CacheFile {
        version: 1,
        sources: store
            .cached()
            .into_iter()
            .filter(|s| !s.answers.is_empty())
            .map(|s| CachedEntry {
                url: s.url.to_string(),
                address: s.address,
                fetched_at_unix: unix(s.fetched_at),
                current: cached(&s.answers[0].0),
                old: s.answers[0].1.as_ref().map(cached),
                retained: s.answers[1..]
                    .iter()
                    .map(|(current, old, seen)| CachedAnswer {
                        current: cached(current),
                        old: old.as_ref().map(cached),
                        last_seen_unix: unix(*seen),
                    })
                    .collect(),
            })
            .collect(),
        trusted: store
            .trusted_sets()
            .into_iter()
            .map(|(url, set)| (url.to_string(), set.iter().map(Fingerprint::to_string).collect()))
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    // One writer at a time, each through a temporary file of its own, synced before the rename:
    // a request proving a rotation and a fetch round writing at once never interleave, and a
    // crash leaves the old file or the new one, never a torn one.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&text)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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
    /// A trusted fingerprint of `url` is malformed.
    Trusted {
        /// Its discovery URL.
        url: String,
        /// Why.
        error: String,
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
            CacheError::Trusted { url, error } => write!(f, "trusted key of {url}: {error}"),
        }
    }
}

/// What a cache file gives: each still-configured source's answers, and the trusted sets.
#[derive(Debug)]
pub struct Cached {
    /// Sources, in file order.
    pub sources: Vec<CachedSource>,
    /// `rotation` trusted sets of still-configured URLs.
    pub trusted: TrustedSets,
}

/// Reads the cache, keeping the sources still configured (matched by URL). A missing file is
/// not an error; any unusable entry rejects the whole file.
pub fn load_cache(path: &Path, urls: &[String]) -> Result<Cached, CacheError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Cached { sources: Vec::new(), trusted: TrustedSets::new() })
        }
        Err(e) => return Err(CacheError::Read(path.to_owned(), e)),
    };
    let file: CacheFile = serde_json::from_slice(&text).map_err(|e| CacheError::Format(path.to_owned(), e))?;
    let mut sources = Vec::new();
    for entry in file.sources {
        let Some(index) = urls.iter().position(|u| *u == entry.url) else { continue };
        let url = &entry.url;
        let unusable = |old: bool| move |error| CacheError::Key { url: url.clone(), old, error };
        let mut answers = vec![(
            key(&entry.current).map_err(unusable(false))?,
            entry.old.as_ref().map(key).transpose().map_err(unusable(true))?,
            at(entry.fetched_at_unix),
        )];
        for r in &entry.retained {
            answers.push((
                key(&r.current).map_err(unusable(false))?,
                r.old.as_ref().map(key).transpose().map_err(unusable(true))?,
                at(r.last_seen_unix),
            ));
        }
        sources.push(CachedSource {
            index,
            url: Arc::from(entry.url.as_str()),
            address: entry.address,
            fetched_at: at(entry.fetched_at_unix),
            answers,
        });
    }
    let mut trusted = TrustedSets::new();
    for (url, fingerprints) in file.trusted {
        // A source's set: the URL's, or one of its addresses' (`URL@address`).
        if !urls.iter().any(|u| super::trust::label_of(u, &url)) {
            continue;
        }
        let set = fingerprints
            .iter()
            .map(|f| Fingerprint::parse(f))
            .collect::<Result<_, _>>()
            .map_err(|error| CacheError::Trusted { url: url.clone(), error })?;
        trusted.insert(Arc::from(url.as_str()), set);
    }
    Ok(Cached { sources, trusted })
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
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
    use std::time::SystemTime;

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
        assert!(load_cache(&dir.join("absent.json"), &urls).unwrap().sources.is_empty());

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
        let keys = load_cache(&path, &urls).unwrap().sources;
        assert_eq!((keys.len(), keys[0].answers.len(), keys[0].answers[0].1.is_none()), (1, 1, true));
        // A source no longer configured is skipped, not an error.
        assert!(load_cache(&path, &["https://other.example/hosting/discovery".into()]).unwrap().sources.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retained_answers_and_trusted_sets_survive_a_round_trip() {
        use crate::diagnose::Signer;
        use crate::keys::{KeysConfig, Served, TrustMode};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (a, b) = (Signer::generate(2048), Signer::generate(2048));
        let key = |s: &Signer| ProofKey::from_components(s.modulus(), s.exponent()).unwrap();
        let config =
            KeysConfig { retention: Duration::from_secs(3600), trust: TrustMode::Rotation, ..KeysConfig::default() };
        let store = KeyStore::new();
        store.configure(&config);
        let now = SystemTime::now();
        let served = |s: &Signer, old: Option<&Signer>| Served {
            index: 0,
            url: Arc::from(URL),
            address: Some("10.0.0.5".parse().unwrap()),
            current: key(s),
            old: old.map(key),
            at: now,
        };
        store.install(served(&a, None));
        store.install(served(&b, Some(&a)));
        save_cache(&path, &store).unwrap();

        let cached = load_cache(&path, &[URL.to_string()]).unwrap();
        let label = format!("{URL}@10.0.0.5");
        assert_eq!(cached.trusted[label.as_str()].len(), 1, "a, this node's first key; b is not proved");
        let again = KeyStore::new();
        again.configure(&config);
        assert_eq!(again.restore(cached.sources, cached.trusted), vec![Arc::<str>::from(format!("{URL}@10.0.0.5"))]);
        let snapshot = again.snapshot();
        let pairs: Vec<(String, bool)> =
            snapshot.sources.iter().map(|s| (s.current.fingerprint().to_owned(), s.retained)).collect();
        assert_eq!(pairs, [(key(&a).fingerprint().to_owned(), false)], "a verifies in b's old slot");
        assert_eq!(again.trusted_sets(), store.trusted_sets());

        // A malformed trusted fingerprint rejects the file, saying where.
        let text = std::fs::read_to_string(&path).unwrap().replace(&key(&a).fingerprint()[7..], "00");
        std::fs::write(&path, text).unwrap();
        let e = load_cache(&path, &[URL.to_string()]).unwrap_err();
        assert!(matches!(&e, CacheError::Trusted { url, .. } if *url == label), "{e}");
    }
}
