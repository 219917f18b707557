use super::*;
use crate::diagnose::Signer;
use crate::keys::TrustMode;
use std::time::Duration;

const URL: &str = "https://office.example/hosting/discovery";

fn key(signer: &Signer) -> ProofKey {
    ProofKey::from_components(signer.modulus(), signer.exponent()).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn served(url: &str, current: &Signer, old: Option<&Signer>, secs: u64) -> Served {
    Served { index: 0, url: Arc::from(url), address: None, current: key(current), old: old.map(key), at: at(secs) }
}

/// The trusted current keys in force, latest first, with whether each is retained.
fn in_force(store: &KeyStore) -> Vec<(String, bool)> {
    store.snapshot().sources.iter().map(|s| (s.current.fingerprint().to_owned(), s.retained)).collect()
}

fn fp(signer: &Signer) -> String {
    key(signer).fingerprint().to_owned()
}

fn held(store: &KeyStore) -> Vec<(String, Held)> {
    store.snapshot().held.iter().map(|h| (h.fingerprint.to_string(), h.why)).collect()
}

fn config(trust: TrustMode, retention: u64, pinned: &[&Signer]) -> KeysConfig {
    KeysConfig {
        retention: Duration::from_secs(retention),
        trust,
        pinned: pinned.iter().map(|s| key(s).id()).collect(),
        allow_published: false,
    }
}

#[test]
fn alternating_answers_keep_only_the_latest_without_retention() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    assert!(store.install(served(URL, &a, None, 0)));
    assert!(store.install(served(URL, &b, None, 1)));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    assert!(store.install(served(URL, &a, None, 2)));
    assert_eq!(in_force(&store), [(fp(&a), false)]);
    // Every switch is a change: nothing retained it.
    assert_eq!(store.snapshot().changes, vec![(Arc::<str>::from(URL), 2)]);
}

#[test]
fn retention_keeps_both_nodes_keys_and_expires_them_after_the_window() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Discovery, 60, &[]));
    store.install(served(URL, &a, None, 0));
    let generation = store.generation();
    assert!(store.install(served(URL, &b, None, 10)));
    assert_eq!(in_force(&store), [(fp(&b), false), (fp(&a), true)]);
    assert!(store.generation() > generation);
    // The balancer sends the next fetch to node a again: nothing new is trusted.
    assert!(!store.install(served(URL, &a, None, 20)));
    assert!(!store.install(served(URL, &b, None, 30)));
    assert_eq!(in_force(&store), [(fp(&b), false), (fp(&a), true)]);
    // Only the first switch counted as a change: b and a were served within the window since.
    assert_eq!(store.snapshot().changes, vec![(Arc::<str>::from(URL), 1)]);
    // a was last served at 20: kept until 80, gone after.
    store.expire(at(80));
    assert_eq!(in_force(&store).len(), 2);
    store.expire(at(81));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    // The latest answer stays however old it is: the last-known-good keys.
    store.expire(at(100_000));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
}

#[test]
fn pinned_trust_uses_only_pinned_keys_and_a_reload_that_pins_one_admits_it() {
    let (a, b, c) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Pinned, 0, &[&a]));
    store.install(served(URL, &a, Some(&c), 0));
    assert_eq!(in_force(&store), [(fp(&a), false)]);
    assert!(store.snapshot().sources[0].old.is_none(), "an unpinned old key is not used");
    assert_eq!(held(&store), [(fp(&c), Held::NotPinned)]);

    store.install(served(URL, &b, Some(&a), 1));
    // The office rotates to b and lists a as old: the pinned a, in the old slot, still verifies
    // (its nodes sign with it during the rotation), and the source is never without keys.
    assert_eq!(in_force(&store), [(fp(&a), false)]);
    // The answer before it is not kept for its sake (no retention): c is no longer served.
    assert_eq!(held(&store), [(fp(&b), Held::NotPinned)]);

    store.configure(&config(TrustMode::Pinned, 0, &[&a, &b]));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    store.expire(at(2));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    assert_eq!(store.snapshot().sources[0].old.as_ref().map(|k| k.fingerprint().to_owned()), Some(fp(&a)));
    assert!(held(&store).is_empty());
}

#[test]
fn rotation_trusts_first_use_then_only_proved_rotations() {
    let (a, b, c, d) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Rotation, 0, &[]));
    store.install(served(URL, &a, None, 0));
    store.round_done(URL);
    assert_eq!(in_force(&store), [(fp(&a), false)]);

    // Discovery lists a as b's old key: b is held (a forger can serve that too), a still verifies.
    store.install(served(URL, &b, Some(&a), 1));
    assert_eq!(in_force(&store), [(fp(&a), false)]);
    assert_eq!(held(&store), [(fp(&b), Held::NotAnnounced)]);
    let unproved: Vec<String> = store.snapshot().unproved.iter().map(|u| u.key.fingerprint().to_owned()).collect();
    assert_eq!(unproved, [fp(&b)], "b may be proved");
    // A request signed by both proves b.
    let label = Arc::<str>::from(URL);
    assert!(store.prove(&label, &key(&b), &fp(&a)));
    assert!(!store.prove(&label, &key(&b), &fp(&a)), "once");
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    assert!(store.snapshot().unproved.is_empty());

    // A new key nobody proved (a restart with a fresh key, or a forged discovery) is held, also
    // when it claims an untrusted old key.
    store.install(served(URL, &d, Some(&c), 3));
    assert_eq!(in_force(&store), [(fp(&b), true)], "only b still verifies");
    assert_eq!(held(&store), [(fp(&d), Held::NotAnnounced), (fp(&c), Held::NotAnnounced)]);
    assert_eq!(store.trusted_sets()[URL].len(), 2, "a and b are trusted, not c or d");

    // Pinning d and reloading admits it.
    store.configure(&config(TrustMode::Rotation, 0, &[&d]));
    store.expire(at(4));
    assert_eq!(in_force(&store), [(fp(&d), false)]);
}

#[test]
fn a_fleets_first_round_trusts_every_node_and_later_keys_are_held() {
    let (a, b, c, e) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Rotation, 0, &[]));
    let node = |ip: &str, s: &Signer, t: u64| Served { address: Some(ip.parse().unwrap()), ..served(URL, s, None, t) };
    // Both nodes answer in the first round: each trusts its own key.
    store.install(node("127.0.0.2", &a, 0));
    store.install(node("127.0.0.3", &b, 0));
    store.round_done(URL);
    let mut trusted: Vec<String> =
        store.snapshot().sources.iter().map(|s| s.current.fingerprint().to_owned()).collect();
    trusted.sort();
    let mut want = vec![fp(&a), fp(&b)];
    want.sort();
    assert_eq!(trusted, want);
    // Each node keeps its own set: a's key is not .3's, and a later key on .3 is held.
    store.install(node("127.0.0.3", &c, 1));
    assert_eq!(held(&store), [(fp(&c), Held::NotAnnounced)]);
    // A node that appears after the first round is not trusted on first use.
    store.install(node("127.0.0.4", &e, 2));
    assert!(held(&store).contains(&(fp(&e), Held::NotAnnounced)));
}

#[test]
fn keys_never_cross_urls_in_rotation() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let other = "https://office-b.example/hosting/discovery";
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Rotation, 0, &[]));
    store.install(served(URL, &a, None, 0));
    store.install(served(other, &b, None, 0));
    // other now serves a key that URL trusts, claiming b's rotation: fine, b is other's own.
    // But a rotation other announces from a's key is not other's to announce.
    let c = Signer::generate(2048);
    store.install(served(other, &c, Some(&a), 1));
    let others: Vec<String> = store
        .snapshot()
        .sources
        .iter()
        .filter(|s| &*s.url == other)
        .map(|s| s.current.fingerprint().to_owned())
        .collect();
    assert_eq!(others, [fp(&b)], "c is not trusted");
    assert_eq!(held(&store), [(fp(&c), Held::NotAnnounced), (fp(&a), Held::NotAnnounced)], "a is URL's, not other's");
}

#[test]
fn published_keys_are_held_unless_allowed() {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/onlyoffice_published_keys/onlyoffice_default_2024-05-25_2048_1.pem"
    ))
    .unwrap();
    let signer = crate::diagnose::signer_from_pem(&pem).unwrap();
    let store = KeyStore::new();
    store.install(served(URL, &signer, None, 0));
    assert!(store.snapshot().is_empty());
    assert!(matches!(held(&store)[..], [(_, Held::Published(p))] if p.shipped == "2024 and 2025"));
    store.configure(&KeysConfig { allow_published: true, ..KeysConfig::default() });
    assert_eq!(in_force(&store), [(fp(&signer), false)]);
}

#[test]
fn a_reload_keeps_moved_sources_and_drops_removed_ones() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    assert!(store.install(served("https://a", &a, None, 0)));
    assert!(store.install(Served { index: 1, ..served("https://b", &b, None, 0) }));
    let before = store.generation();

    let dropped = store.retain_sources(&["https://c".into(), "https://b".into()]);
    assert_eq!(dropped, vec![Arc::<str>::from("https://a")]);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.sources.len(), 1);
    assert_eq!((&*snapshot.sources[0].url, snapshot.sources[0].index), ("https://b", 1));
    assert!(store.generation() > before, "a waiter sees that keys went away");

    // A fetch of the removed source that was under way cannot bring its keys back, and a
    // fetch that still uses an old position lands at the source's new one.
    assert!(!store.install(served("https://a", &a, None, 1)));
    assert!(store.install(Served { index: 7, ..served("https://c", &a, None, 1) }));
    let positions: Vec<(String, usize)> =
        store.snapshot().sources.iter().map(|s| (s.url.to_string(), s.index)).collect();
    assert_eq!(positions, [("https://c".to_string(), 0), ("https://b".to_string(), 1)]);
}

#[test]
fn an_address_that_no_longer_resolves_keeps_its_keys_for_the_retention() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let (ip_a, ip_b) = ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Discovery, 30, &[]));
    store.install(Served { address: Some(ip_a), ..served(URL, &a, None, 0) });
    store.install(Served { address: Some(ip_b), ..served(URL, &b, None, 0) });
    let labels: Vec<String> = store.snapshot().sources.iter().map(|s| s.url.to_string()).collect();
    assert_eq!(labels, [format!("{URL}@10.0.0.5"), format!("{URL}@10.0.0.6")]);

    assert_eq!(store.retire_absent(URL, Some(&[ip_a]), at(10)), vec![Arc::<str>::from(format!("{URL}@10.0.0.6"))]);
    assert_eq!(in_force(&store), [(fp(&a), false), (fp(&b), true)]);
    store.expire(at(31));
    assert_eq!(in_force(&store), [(fp(&a), false)]);

    // resolve_all switched off: the URL is fetched as one source, and the per-address one goes
    // (at once here: a was last served at 0, more than 30 s before 40).
    store.install(served(URL, &b, None, 40));
    assert_eq!(store.retire_absent(URL, None, at(40)), vec![Arc::<str>::from(format!("{URL}@10.0.0.5"))]);
    assert_eq!(store.snapshot().sources.iter().map(|s| s.url.to_string()).collect::<Vec<_>>(), [URL]);
    // ... and switched on again: the source without an address is retired.
    store.install(Served { address: Some(ip_a), ..served(URL, &a, None, 50) });
    assert_eq!(store.retire_absent(URL, Some(&[ip_a]), at(50)), vec![Arc::<str>::from(URL)]);
}

#[test]
fn discovered_keys_drop_an_old_key_equal_to_the_current_one() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let found = |old: Option<&Signer>| DiscoveredKeys { current: key(&a), old: old.map(key), current_from: "value" };
    let same = Served::new(3, Arc::from("https://a"), None, found(Some(&a)), at(0));
    assert_eq!((same.index, &*same.url, same.old), (3, "https://a", None));
    let rotated = Served::new(0, Arc::from("https://a"), None, found(Some(&b)), at(0));
    assert_eq!(rotated.old.as_ref().map(ProofKey::fingerprint), Some(fp(&b).as_str()));
}

#[test]
fn a_held_answer_does_not_take_the_trusted_keys_away() {
    let (a, b, forged) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Pinned, 0, &[&a, &b]));
    store.install(served(URL, &a, None, 0));
    store.install(served(URL, &forged, None, 10));
    assert_eq!(in_force(&store), [(fp(&a), true)], "a still verifies; the forged key is held");
    assert_eq!(held(&store), [(fp(&forged), Held::NotPinned)]);
    store.expire(at(100_000));
    assert_eq!(in_force(&store), [(fp(&a), true)]);
    // A trusted answer takes over as usual, and the one before it goes (no retention).
    store.install(served(URL, &b, None, 20));
    assert_eq!(in_force(&store), [(fp(&b), false)]);
    assert!(held(&store).is_empty());
}

#[test]
fn retention_never_brings_back_a_key_trust_refused() {
    let (a, b) = (Signer::generate(2048), Signer::generate(2048));
    let store = KeyStore::new();
    store.configure(&config(TrustMode::Pinned, 3600, &[&a]));
    store.install(served(URL, &b, None, 0));
    store.install(served(URL, &a, None, 10));
    store.install(served(URL, &a, Some(&b), 20));
    assert_eq!(in_force(&store), [(fp(&a), false)], "the retained answer (a alone) is the same pair");
    assert!(store.snapshot().sources[0].old.is_none(), "b, retained or served as old, stays held");
    assert_eq!(held(&store), [(fp(&b), Held::NotPinned)]);
}
