//! `[[routes]]`: several WOPI hosts behind one wopi-guard. Each route is the top level's route
//! sections (`upstream`, `public_url`, `[discovery]`, `[keys]`, `[proof]`, `[ip]`,
//! `[rate_limit]`, `[operations]`, `[health]`) with the route's own values layered over them key
//! by key, validated as the top level is. A problem in a value the route sets is named
//! `routes[i].key`; one in a value it takes from the top level is named once, by its top-level
//! key; a required value neither sets is named `routes[i].key`.

use super::error::{err, ConfigError};
use super::raw::RawConfig;
use super::types::{RouteConfig, RouteHost};
use super::validate::{validate_route, Own};

/// The route tables' sections that are layered over the top level's, key by key.
const LAYERED: [&str; 9] =
    ["public_url", "upstream", "discovery", "keys", "proof", "ip", "rate_limit", "operations", "health"];

/// Validates the `count` tables of `table["routes"]`, each over the rest of `table`.
pub(super) fn validate_routes(
    table: &toml::Table,
    count: usize,
    own: Own,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<RouteConfig>> {
    let start = errors.len();
    if count == 0 {
        errors.push(err("routes", "is an empty list; add a [[routes]] table per WOPI host, or remove `routes`".into()));
        return None;
    }
    let empty = toml::Table::new();
    let list = table.get("routes").and_then(toml::Value::as_array);
    let mut top = table.clone();
    top.remove("routes");
    let mut routes = Vec::new();
    for i in 0..count {
        let own_table = list.and_then(|l| l.get(i)).and_then(toml::Value::as_table).unwrap_or(&empty);
        let key = |k: &str| format!("routes[{i}].{k}");
        let host = match own_table.get("host").and_then(toml::Value::as_str) {
            None => {
                errors.push(err(&key("host"), "missing; set it to the Host this route serves, e.g. \"cloud-a.example.com\", or \"*\" for any other".into()));
                None
            }
            Some(text) => route_host(text).map_err(|why| errors.push(err(&key("host"), why))).ok(),
        };
        if own_table.get("ip").and_then(|ip| ip.get("max_connections")).is_some() {
            errors.push(err(&key("ip.max_connections"), "connections are capped before the Host is read, so per route is not possible; set ip.max_connections at the top level".into()));
        }
        let mut merged = top.clone();
        for section in LAYERED {
            if let Some(value) = own_table.get(section) {
                layer(&mut merged, section, value);
            }
        }
        let mut found = Vec::new();
        let route = match toml::Value::Table(merged).try_into::<RawConfig>() {
            Ok(raw) => validate_route(raw, host.clone().unwrap_or(RouteHost::Any), own, &mut found),
            Err(e) => {
                found.push(err("(route)", format!("cannot be read: {}", e.to_string().trim())));
                None
            }
        };
        for mut e in found {
            if set_in(own_table, &e.key) || !set_in(&top, &e.key) {
                e.key = key(&e.key);
                errors.push(e);
            } else if !errors.iter().any(|seen| seen.key == e.key && seen.message == e.message) {
                errors.push(e);
            }
        }
        if let (Some(_), Some(route)) = (host, route) {
            routes.push(route);
        }
    }
    if errors.len() > start {
        return None;
    }
    for (i, route) in routes.iter().enumerate() {
        if let Some(j) = routes[..i].iter().position(|r| r.host == route.host) {
            errors.push(err(
                &format!("routes[{i}].host"),
                format!("\"{}\" is also routes[{j}]'s; each Host has one route", route.host),
            ));
        }
        let cache = route.discovery.cache_file.as_ref();
        if let Some(j) = routes[..i].iter().position(|r| cache.is_some() && r.discovery.cache_file.as_ref() == cache) {
            errors.push(err(&format!("routes[{i}].discovery.cache_file"), format!("{} is also routes[{j}]'s; each route keeps its own keys, so give each route its own cache file (set discovery.cache_file in every [[routes]] table)", cache.map_or(String::new(), |c| c.display().to_string()))));
        }
    }
    (errors.len() == start).then_some(routes)
}

/// Sets `section` of `base` to `value`, table into table key by key (a route's `[proof]` with
/// only `paths` keeps the top level's `max_age`); anything else replaces.
fn layer(base: &mut toml::Table, section: &str, value: &toml::Value) {
    match (base.get_mut(section), value) {
        (Some(toml::Value::Table(below)), toml::Value::Table(over)) => {
            for (key, value) in over {
                layer(below, key, value);
            }
        }
        _ => {
            base.insert(section.to_string(), value.clone());
        }
    }
}

/// Whether `table` sets the value an error `key` names (`proof.paths[0]`,
/// `rate_limit.per_ip.operations.PutFile`, `upstream`), or a table or list holding it.
fn set_in(table: &toml::Table, key: &str) -> bool {
    let mut here = table;
    for segment in key.split('.') {
        let name = segment.split('[').next().unwrap_or(segment);
        match here.get(name) {
            None => return false,
            Some(toml::Value::Table(inner)) => here = inner,
            Some(_) => return true,
        }
    }
    true
}

/// A route's `host`: `*`, a host name or an IPv4 address, or a bracketed IPv6 address; any case,
/// without a port or a trailing dot.
pub(super) fn route_host(text: &str) -> Result<RouteHost, String> {
    let fix = "write the host name only, without scheme, port or path, e.g. \"cloud-a.example.com\" (or \"*\" for any host no other route names)";
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok(RouteHost::Any);
    }
    let name = trimmed.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    // An IPv6 address in its one canonical text (RFC 5952), as the router writes a request's.
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(RouteHost::Name(format!("[{ip}]"))),
            Err(_) => Err(format!("\"{text}\" is not a host; {fix}")),
        };
    }
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        Ok(RouteHost::Name(name.to_string()))
    } else {
        Err(format!("\"{text}\" is not a host; {fix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const TWO: &str = r#"
        [proof]
        max_age = "10m"
        [discovery]
        refresh_interval = "1h"
        [[routes]]
        host = "Cloud-A.example.com."
        public_url = "https://cloud-a.example.com"
        upstream = "http://10.0.0.5:80"
        [routes.discovery]
        urls = ["https://office-a.example.com/hosting/discovery"]
        [[routes]]
        host = "*"
        public_url = "https://cloud-b.example.com"
        upstream = ["http://10.0.0.6:80", "http://10.0.0.7:80"]
        [routes.discovery]
        urls = ["https://office-b.example.com/hosting/discovery"]
        [routes.proof]
        paths = ["/b/wopi/"]
    "#;

    #[test]
    fn routes_take_what_they_do_not_set_from_the_top_level() {
        let c = Config::from_toml(TWO).unwrap();
        assert!(c.routed);
        assert_eq!(c.routes.len(), 2);
        let (a, b) = (&c.routes[0], &c.routes[1]);
        assert_eq!(a.host, RouteHost::Name("cloud-a.example.com".into()));
        assert_eq!(b.host, RouteHost::Any);
        assert_eq!(a.discovery.urls, ["https://office-a.example.com/hosting/discovery"]);
        assert_eq!(a.discovery.refresh_interval, std::time::Duration::from_secs(3600), "from the top level");
        assert_eq!(b.proof.window.max_age, std::time::Duration::from_secs(600), "key by key: max_age kept");
        assert!(b.proof.paths.is_protected(b"/b/wopi/files/1") && !b.proof.paths.is_protected(b"/wopi/files/1"));
        assert!(a.proof.paths.is_protected(b"/wopi/files/1"));
        assert_eq!(b.upstream.len(), 2);
        assert!(b.health.is_some() && a.health.is_none(), "a pool is health-checked by default");
    }

    #[test]
    fn a_file_without_routes_is_one_route_for_any_host() {
        let c = crate::config::load_with("").unwrap();
        assert!(!c.routed);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].host, RouteHost::Any);
    }

    fn errors(text: &str) -> Vec<(String, String)> {
        Config::from_toml(text).unwrap_err().0.into_iter().map(|e| (e.key, e.message)).collect()
    }

    #[test]
    fn every_route_problem_is_named_by_where_it_is_written() {
        let text = r#"
            [proof]
            max_age = "soon"
            [[routes]]
            host = "a.example.com"
            public_url = "https://a.example.com"
            upstream = "ftp://x"
            [routes.discovery]
            urls = ["https://office-a/hosting/discovery"]
            [routes.ip]
            max_connections = 5
            [[routes]]
            host = "a.example.com:443"
            [[routes]]
            public_url = "https://c.example.com"
            [routes.proof]
            colour = "red"
        "#;
        let e = errors(text);
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "routes[0].upstream",
            "routes[0].ip.max_connections",
            "proof.max_age",
            "routes[1].host",
            "routes[1].upstream",
            "routes[1].public_url",
            "routes[1].discovery.urls",
            "routes[2].host",
            "routes[2].proof.colour",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert_eq!(keys.iter().filter(|k| **k == "proof.max_age").count(), 1, "a top-level problem once: {keys:?}");
        let host = &e.iter().find(|(k, _)| k == "routes[1].host").unwrap().1;
        assert!(host.contains("without scheme, port or path"), "{host}");
    }

    #[test]
    fn hosts_and_cache_files_are_one_per_route() {
        let route = |host: &str| {
            format!("[[routes]]\nhost = \"{host}\"\npublic_url = \"https://{host}\"\nupstream = \"http://10.0.0.5\"\n[routes.discovery]\nurls = [\"https://o/hosting/discovery\"]\n")
        };
        let text =
            format!("[discovery]\ncache_file = \"/var/lib/k.json\"\n{}{}", route("a.example"), route("A.example"));
        let keys: Vec<String> = errors(&text).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["routes[1].host", "routes[1].discovery.cache_file"]);
        assert_eq!(errors("routes = []")[0].0, "routes");
    }

    #[test]
    fn host_forms() {
        assert_eq!(route_host("*"), Ok(RouteHost::Any));
        assert_eq!(route_host("Cloud.Example.COM."), Ok(RouteHost::Name("cloud.example.com".into())));
        assert_eq!(route_host("[2001:DB8::1]"), Ok(RouteHost::Name("[2001:db8::1]".into())));
        assert_eq!(route_host("[2001:db8:0:0::1]"), Ok(RouteHost::Name("[2001:db8::1]".into())), "canonical");
        assert_eq!(route_host("192.0.2.7"), Ok(RouteHost::Name("192.0.2.7".into())));
        for bad in ["", "https://a.example", "a.example:443", "a.example/x", "[nothing]", "a b"] {
            assert!(route_host(bad).is_err(), "{bad}");
        }
    }
}
