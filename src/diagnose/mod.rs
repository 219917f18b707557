//! Diagnostics for admins: what keys a discovery document holds (`discovery`), why a captured
//! request verifies or not (`explain`), and signing a request for end-to-end tests (`sign`, with
//! the office server's signing in `signer`).

mod discovery;
mod explain;
mod sign;
mod signer;

pub use discovery::{describe_discovery, every_node, load_discovery, DiscoveryUnusable};
pub use explain::{explain, CapturedRequest};
pub use sign::{sign_request, signer_from_pem};
pub use signer::{ProofSet, Signer};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{ClientTls, Config, ProofConfig};
use crate::keys::{parse_discovery, KeyStore, Served};
use crate::proof::ticks_at;

fn fail(message: String) -> ExitCode {
    eprintln!("wopi-guard: {message}");
    ExitCode::from(1)
}

/// `wopi-guard discovery SOURCE [--ca-file F]`.
pub fn discovery_command(source: &str, timeout: Duration, ca_file: Option<&std::path::Path>) -> ExitCode {
    let tls = ClientTls { ca_file: ca_file.map(Into::into), insecure_skip_verify: false };
    let xml = match load_discovery(source, timeout, &tls) {
        Ok(xml) => xml,
        Err(e) => return fail(e),
    };
    match describe_discovery(&xml) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(unusable) => {
            print!("{}", unusable.report);
            fail(format!("{source}: {}", unusable.error))
        }
    }
}

/// `wopi-guard discovery --resolve-all URL`: every node's keys.
pub fn discovery_every_node_command(url: &str, timeout: Duration, ca_file: Option<&std::path::Path>) -> ExitCode {
    let tls = ClientTls { ca_file: ca_file.map(Into::into), insecure_skip_verify: false };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(e.to_string()),
    };
    let (report, failed) = runtime.block_on(discovery::every_node(url, timeout, &tls, &crate::keys::Resolver::System));
    print!("{report}");
    if failed {
        fail(format!("{url}: not every node answered with usable keys"))
    } else {
        ExitCode::SUCCESS
    }
}

/// `wopi-guard sign`.
pub fn sign_command(key: &Path, old_key: Option<&PathBuf>, url: &str, timestamp: Option<i64>) -> ExitCode {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
            .and_then(|t| signer_from_pem(&t).map_err(|e| format!("{}: {e}", p.display())))
    };
    if let Err(e) = check_url(url) {
        return fail(format!("--url: {e}"));
    }
    let current = match read(key) {
        Ok(s) => s,
        Err(e) => return fail(format!("--key: {e}")),
    };
    let old = match old_key.map(|p| read(p)).transpose() {
        Ok(old) => old,
        Err(e) => return fail(format!("--old-key: {e}")),
    };
    print!(
        "{}",
        sign_request(
            url,
            &current,
            old.as_ref().unwrap_or(&current),
            timestamp.unwrap_or_else(|| ticks_at(SystemTime::now()))
        )
    );
    ExitCode::SUCCESS
}

/// The URL an office server would call: absolute, http or https, with a host.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e}); give the full URL, e.g. https://wopi.example.com/wopi/files/1?access_token=..."))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} is not an http(s) URL with a host"));
    }
    Ok(())
}

/// The route of `config` a capture's host picks (its first line's absolute URL), as the proxy's
/// router would pick it; the first route when it picks none.
fn route_of_capture<'a>(config: &'a Config, capture: &str) -> &'a crate::config::RouteConfig {
    let target = capture.lines().next().and_then(|line| line.split_whitespace().nth(1)).unwrap_or("");
    let hosts: Vec<_> = config.routes.iter().map(|r| r.host.clone()).collect();
    let table = crate::routing::RouteTable::new(&hosts, config.routed);
    let picked = table.route(target.as_bytes(), &http::HeaderMap::new()).unwrap_or(0);
    &config.routes[picked]
}

/// `explain` under `rotation`: the trusted sets the proxy keeps, from `discovery.cache_file` and
/// from `[shared]`'s Redis (which wins, as in the proxy), into `store`.
fn load_trusted(config: &Config, route: &crate::config::RouteConfig, store: &KeyStore) {
    if let Some(path) = &route.discovery.cache_file {
        match crate::keys::load_cache(path, &route.discovery.urls) {
            Ok(cached) => {
                // explain fetches each URL once (no addresses): every node's set counts for it.
                let mut by_url = crate::keys::TrustedSets::new();
                for (label, set) in cached.trusted {
                    let url = route.discovery.urls.iter().find(|u| crate::keys::label_of(u, &label));
                    if let Some(url) = url {
                        by_url.entry(Arc::from(url.as_str())).or_default().extend(set);
                    }
                }
                store.restore(Vec::new(), by_url);
                eprintln!("wopi-guard: trusted keys from {}", path.display());
            }
            Err(e) => eprintln!("wopi-guard: {}: {e} (no trusted keys from it)", path.display()),
        }
    }
    let Some(mut shared) = config.shared.clone() else { return };
    if config.routed {
        shared.key_prefix = format!("{}:{}", shared.key_prefix, route.host);
    }
    let state = crate::shared::SharedState::new(
        shared,
        route.rate_limit.clone(),
        None,
        Arc::new(crate::metrics::Metrics::new(&[])),
    );
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    for url in &route.discovery.urls {
        let kept = runtime.block_on(crate::keys::TrustShare::kept(&state, url, url));
        match kept {
            Ok(Some(set)) => {
                store.adopt(&Arc::from(url.as_str()), set);
                eprintln!("wopi-guard: trusted keys of {url} from [shared]");
            }
            Ok(None) => {}
            Err(e) => eprintln!("wopi-guard: [shared]: {e} (its trusted keys not read)"),
        }
    }
}

/// `wopi-guard explain`.
pub fn explain_command(
    request: &Path,
    config: Option<&PathBuf>,
    discovery: &[String],
    public_url: Option<&str>,
    at: Option<SystemTime>,
) -> ExitCode {
    let config = match config.map(|c| Config::load(c)).transpose() {
        Ok(c) => c,
        Err(e) => return fail(format!("--config is not valid:\n{e}")),
    };
    let text = match std::fs::read_to_string(request) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", request.display())),
    };
    // With `[[routes]]`, the route the captured request's host picks, as the proxy would.
    let route = config.as_ref().map(|c| {
        let route = route_of_capture(c, &text);
        if c.routed {
            eprintln!("wopi-guard: using route {} of the configuration", route.host);
        }
        route
    });
    let sources: Vec<String> = match (&route, discovery.is_empty()) {
        (_, false) => discovery.to_vec(),
        (Some(c), true) => c.discovery.urls.clone(),
        (None, true) => return fail("give --config or --discovery for the keys".into()),
    };
    // The keys as the proxy would judge them: `[keys]` of the configuration (else its defaults),
    // so a held key (a published one, say) does not verify here either.
    let store = KeyStore::new();
    store.configure(&route.map(|c| c.keys.clone()).unwrap_or_default());
    // `rotation`: the keys the proxy trusts are in its cache file or in `[shared]`, not whatever
    // discovery serves now (which would be trusted on first use here).
    if let (Some(config), Some(route)) = (&config, route) {
        if route.keys.trust == crate::keys::TrustMode::Rotation {
            load_trusted(config, route, &store);
        }
    }
    for (index, source) in sources.iter().enumerate() {
        let tls = route.map(|c| c.discovery.tls.clone()).unwrap_or_default();
        let parsed = load_discovery(source, Duration::from_secs(10), &tls)
            .and_then(|xml| parse_discovery(&xml).map_err(|e| e.to_string()));
        match parsed {
            Ok(k) => {
                store.install(Served::new(index, Arc::from(source.as_str()), None, k, SystemTime::now()));
            }
            Err(e) => eprintln!("wopi-guard: {source}: {e} (skipped)"),
        }
    }
    let keys = store.snapshot();
    for held in &keys.held {
        eprintln!(
            "wopi-guard: {}: key {} is held ({}): the proxy does not use it",
            held.source, held.fingerprint, held.why
        );
    }
    // The window the proxy would use: the configuration's, else its defaults.
    let window = route.map_or_else(|| ProofConfig::defaults().window, |c| c.proof.window);
    let base = public_url.map(str::to_string).or_else(|| route.map(|c| c.public_url.as_str().to_string()));
    let captured = match CapturedRequest::parse(&text, base.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (report, ok) = explain(&captured, &keys, &window, at.unwrap_or_else(SystemTime::now));
    print!("{report}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_takes_the_route_the_captured_host_picks() {
        let config = Config::from_toml(
            r#"
            [discovery]
            urls = ["https://office-a/hosting/discovery"]
            [[routes]]
            host = "a.example"
            public_url = "https://a.example"
            upstream = "http://10.0.0.5"
            [[routes]]
            host = "*"
            public_url = "https://b.example"
            upstream = "http://10.0.0.6"
            [routes.discovery]
            urls = ["https://office-b/hosting/discovery"]
            "#,
        )
        .unwrap();
        let host = |capture: &str| route_of_capture(&config, capture).public_url.as_str().to_string();
        assert_eq!(host("GET https://A.example./wopi/files/1?access_token=x\nX-WOPI-Proof: p"), "https://a.example");
        assert_eq!(host("GET https://c.example/wopi/files/1"), "https://b.example", "the `*` route");
        assert_eq!(host("GET /wopi/files/1"), "https://b.example", "no host: the `*` route");
    }
}
