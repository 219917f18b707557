//! What `check` and the start log warn about: settings that are allowed but probably not meant.

use super::types::{Config, ProofMode, RouteConfig};

impl Config {
    /// Things that are allowed but probably not meant; a route's start with `routes[i] (host): `.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let prefix = if self.routed { format!("routes[{i}] ({}): ", route.host) } else { String::new() };
            out.extend(route.warnings().into_iter().map(|w| format!("{prefix}{w}")));
        }
        if let Some(host) = self.shared.as_ref().and_then(|s| s.redis.unused_host()) {
            out.push(format!("shared.redis: with sentinels its host {host} is unused (the sentinels name the master); only its password, database and TLS apply"));
        }
        if self.upstream_tls.insecure_skip_verify {
            out.push("upstream_tls.insecure_skip_verify = true: any certificate is accepted, so anyone on the path can impersonate the server; use ca_file instead".into());
        }
        out
    }
}

impl RouteConfig {
    /// One route's things that are allowed but probably not meant.
    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.proof.paths.protects_nothing() {
            out.push("proof.paths is empty: no request is proof-checked".into());
        }
        if self.proof.mode == ProofMode::Monitor {
            out.push("proof.mode = \"monitor\": requests that fail the proof are forwarded anyway".into());
        }
        if self.ip.allow == crate::policy::AllowList::Only(crate::policy::NetList::default()) {
            out.push("ip.allow is empty: every client is refused (remove [ip] allow to filter nobody)".into());
        }
        if !self.proof.allow_unsigned_from.is_empty() {
            out.push("proof.allow_unsigned_from: requests without proof headers pass from these networks (Collabora with access_header)".into());
        }
        if self.discovery.urls.iter().any(|u| u.starts_with("http://")) {
            out.push("discovery.urls: plain http lets anyone on the path substitute the proof keys; use https".into());
        }
        if self.discovery.tls.insecure_skip_verify {
            out.push("discovery.insecure_skip_verify = true: any certificate is accepted, so anyone on the path can impersonate the server; use ca_file instead".into());
        }
        if self.keys.allow_published {
            out.push("keys.allow_published = true: keys whose private half is public (ONLYOFFICE's default pairs) verify, so anyone can sign WOPI requests; for test setups only".into());
        }
        if let Some(dir) = self.discovery.cache_file.as_ref().and_then(|f| f.parent()) {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                out.push(format!(
                    "discovery.cache_file: directory {} does not exist; the cache will not be written",
                    dir.display()
                ));
            }
        }
        out
    }
}
