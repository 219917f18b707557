//! The policy sections, one typed struct and one validator each: `[ip]`, `[rate_limit]`,
//! `[operations]`, `[forward]` and `[forward_auth]`; and [`PolicyConfig`], the gate's view of them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::defaults as default;
use super::error::{byte_size, duration, err, nets, ConfigError};
use super::raw::{RawBudget, RawConfig, RawLimit};
use crate::operation::Operation;
use crate::policy::{
    AllowList, Budget, ForwardAuthHeaders, ForwardedHeader, LimitConfig, NetList, RateLimitConfig, Scheme,
};

/// Per-operation rules, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationRules {
    /// Refused outright (403).
    pub deny: Vec<Operation>,
    /// Largest request body (413 from Content-Length, and while streaming).
    pub max_body: Vec<(Operation, u64)>,
    /// Upstream read timeout, instead of `timeouts.upstream_read`.
    pub read_timeout: Vec<(Operation, Duration)>,
}

/// True for an override no built-in operation has ([`Operation::OtherOverride`],
/// [`Operation::Custom`]): Nextcloud runs PutRelativeFile for it, so PutRelativeFile's rules
/// apply to it too, each kind of rule on its own, unless that kind names it.
pub fn is_other_override(op: Operation) -> bool {
    matches!(op, Operation::OtherOverride | Operation::Custom(_))
}

impl OperationRules {
    /// The body limit of `op` (an other override: its own when named, else PutRelativeFile's).
    pub fn max_body(&self, op: Operation) -> Option<u64> {
        let own = |op: Operation| self.max_body.iter().find(|(o, _)| *o == op).map(|(_, n)| *n);
        own(op).or_else(|| is_other_override(op).then(|| own(Operation::PutRelativeFile)).flatten())
    }

    /// The read timeout of `op` (likewise).
    pub fn read_timeout(&self, op: Operation) -> Option<Duration> {
        let own = |op: Operation| self.read_timeout.iter().find(|(o, _)| *o == op).map(|(_, d)| *d);
        own(op).or_else(|| is_other_override(op).then(|| own(Operation::PutRelativeFile)).flatten())
    }

    /// Whether `op` is refused: named in `deny`, or an other override while PutRelativeFile is
    /// denied (naming it elsewhere does not lift that: `deny` has no exceptions).
    pub fn denies(&self, op: Operation) -> bool {
        self.deny.contains(&op) || (is_other_override(op) && self.deny.contains(&Operation::PutRelativeFile))
    }
}

/// `[ip]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IpConfig {
    /// `allow`.
    pub allow: AllowList,
    /// `trusted_proxies`.
    pub trusted_proxies: NetList,
    /// `forwarded_header`.
    pub forwarded_header: ForwardedHeader,
}

/// `[forward]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// `verified_header`.
    pub verified_header: bool,
    /// `access_header_names`: the only headers `access_header` may set (lowercase).
    pub access_header_names: Vec<http::HeaderName>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig { verified_header: false, access_header_names: vec![http::header::AUTHORIZATION] }
    }
}

/// `[forward_auth]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardAuthConfig {
    /// `path`: where the forward-auth endpoint answers; absent, it is off.
    pub path: Option<String>,
    /// `uri_header`: which header pair carries the original request.
    pub headers: ForwardAuthHeaders,
}

/// What the gate needs of the policy sections, assembled by [`crate::config::Config::policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// `[ip]`.
    pub ip: IpConfig,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitConfig,
    /// `[operations]`.
    pub operations: OperationRules,
    /// `[forward]`.
    pub forward: ForwardConfig,
    /// `[forward_auth]`.
    pub forward_auth: ForwardAuthConfig,
    /// `https` when the listener has `[tls]`, else `http` (for `X-Forwarded-Proto`).
    pub listener_scheme: Scheme,
}

fn operation(errors: &mut Vec<ConfigError>, key: &str, name: &str) -> Option<Operation> {
    let op = Operation::from_config_name(name).filter(|op| *op != Operation::Unknown);
    if op.is_none() {
        errors.push(err(key, format!("\"{name}\" is not a WOPI operation; use a name such as PutFile, DeleteFile, RenameFile, Lock (or an X-WOPI-Override value such as DELETE)")));
    }
    op
}

fn rate(errors: &mut Vec<ConfigError>, key: &str, value: Option<&toml::Value>) -> Option<f64> {
    let n = match value? {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        other => {
            errors.push(err(key, format!("{other} is not a number")));
            return None;
        }
    };
    if !(n > 0.0 && n <= 1e9) {
        errors.push(err(key, format!("{n} is out of range; use a rate above 0 (0.5 = one every 2 s)")));
        return None;
    }
    Some(n)
}

fn budget(
    errors: &mut Vec<ConfigError>,
    key: &str,
    per_second: Option<&toml::Value>,
    burst: Option<i64>,
) -> Option<Budget> {
    let start = errors.len();
    let rate = rate(errors, &format!("{key}.per_second"), per_second);
    let burst = match burst {
        Some(b @ 1..=1_000_000) => Some(b as u32),
        Some(b) => {
            errors.push(err(&format!("{key}.burst"), format!("{b} is out of range; use 1-1000000")));
            None
        }
        None => None,
    };
    match (rate, burst) {
        (Some(per_second), Some(burst)) => Some(Budget { per_second, burst }),
        (None, None) if errors.len() == start => None,
        _ => {
            if errors.len() == start {
                errors.push(err(key, "set both per_second and burst".into()));
            }
            None
        }
    }
}

/// `[rate_limit.failed_proofs]`: on by default (`per_second = 1`, `burst = 60`); `burst = 0`
/// turns it off. Either key may be set alone.
fn failed_proofs(errors: &mut Vec<ConfigError>, raw: Option<&RawBudget>) -> Option<Budget> {
    let key = "rate_limit.failed_proofs";
    let (per_second, burst) = raw.map_or((None, None), |r| (r.per_second.as_ref(), r.burst));
    let burst = match burst.unwrap_or(default::FAILED_PROOFS_BURST) {
        0 => return None,
        b @ 1..=1_000_000 => b as u32,
        b => {
            errors
                .push(err(&format!("{key}.burst"), format!("{b} is out of range; use 1-1000000, or 0 to turn it off")));
            return None;
        }
    };
    let per_second = match per_second {
        Some(v) => rate(errors, &format!("{key}.per_second"), Some(v))?,
        None => default::FAILED_PROOFS_PER_SECOND,
    };
    Some(Budget { per_second, burst })
}

fn limit(errors: &mut Vec<ConfigError>, key: &str, raw: Option<&RawLimit>) -> Option<LimitConfig> {
    let raw = raw?;
    let start = errors.len();
    let general = budget(errors, key, raw.per_second.as_ref(), raw.burst);
    let mut operations = Vec::new();
    for (name, RawBudget { per_second, burst }) in raw.operations.iter().flatten() {
        let op_key = format!("{key}.operations.{name}");
        let before = errors.len();
        let op = operation(errors, &op_key, name);
        match (op, budget(errors, &op_key, per_second.as_ref(), *burst)) {
            (Some(op), Some(b)) => operations.push((op, b)),
            (Some(_), None) if errors.len() == before => errors.push(err(&op_key, "set per_second and burst".into())),
            _ => {}
        }
    }
    // A table with a broken budget already has its error; "no budget" would only mislead.
    if general.is_none() && operations.is_empty() && errors.len() == start {
        errors.push(err(
            key,
            "sets no budget; give per_second and burst, or per-operation budgets, or remove the table".into(),
        ));
    }
    Some(LimitConfig { general, operations })
}

fn per_operation<T, V>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    map: Option<&BTreeMap<String, T>>,
    mut value: impl FnMut(&mut Vec<ConfigError>, &str, &T) -> Option<V>,
) -> Vec<(Operation, V)> {
    let mut out = Vec::new();
    for (name, raw) in map.into_iter().flatten() {
        let item = format!("{key}.{name}");
        if let (Some(op), Some(v)) = (operation(errors, &item, name), value(errors, &item, raw)) {
            out.push((op, v));
        }
    }
    out
}

/// `[ip]`.
pub fn validate_ip(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Option<IpConfig> {
    let start = errors.len();
    let ip = raw.ip.as_ref();
    let allow = match ip.and_then(|ip| ip.allow.as_ref()) {
        None => Some(AllowList::Everyone),
        Some(list) => nets(errors, "ip.allow", Some(list)).map(AllowList::Only),
    };
    let trusted_proxies = nets(errors, "ip.trusted_proxies", ip.and_then(|ip| ip.trusted_proxies.as_ref()));
    let forwarded_header = match ip.and_then(|ip| ip.forwarded_header.as_deref()) {
        None => ForwardedHeader::default(),
        Some(name) if name.eq_ignore_ascii_case("x-forwarded-for") => ForwardedHeader::XForwardedFor,
        Some(name) if name.eq_ignore_ascii_case("forwarded") => ForwardedHeader::Forwarded,
        Some(name) => {
            errors.push(err(
                "ip.forwarded_header",
                format!("\"{name}\" is not a forwarding header; use \"x-forwarded-for\" (nginx, Traefik, HAProxy, load balancers; the default) or \"forwarded\" (RFC 7239), whichever your trusted proxy sets and overwrites"),
            ));
            ForwardedHeader::default()
        }
    };
    (errors.len() == start).then(|| IpConfig {
        allow: allow.unwrap_or(AllowList::Everyone),
        trusted_proxies: trusted_proxies.unwrap_or_default(),
        forwarded_header,
    })
}

/// `[forward_auth]`.
pub fn validate_forward_auth(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Option<ForwardAuthConfig> {
    let start = errors.len();
    let headers = match raw.forward_auth.uri_header.as_deref() {
        None => ForwardAuthHeaders::default(),
        Some(name) => ForwardAuthHeaders::from_name(name).unwrap_or_else(|| {
            errors.push(err(
                "forward_auth.uri_header",
                format!("\"{name}\" is not supported; use \"x-original-uri\" (nginx auth_request, with X-Original-Method; the default) or \"x-forwarded-uri\" (Traefik forwardAuth, with X-Forwarded-Method)"),
            ));
            ForwardAuthHeaders::default()
        }),
    };
    if let Some(path) = &raw.forward_auth.path {
        if !path.starts_with('/') || path.contains('?') {
            errors.push(err(
                "forward_auth.path",
                format!("\"{path}\" must be a path starting with '/', without a query"),
            ));
        }
    }
    (errors.len() == start).then(|| ForwardAuthConfig { path: raw.forward_auth.path.clone(), headers })
}

/// `[forward]`.
pub fn validate_forward(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> ForwardConfig {
    let mut out = ForwardConfig { verified_header: raw.forward.verified_header.unwrap_or(false), ..Default::default() };
    if let Some(names) = &raw.forward.access_header_names {
        out.access_header_names.clear();
        for (i, text) in names.iter().enumerate() {
            let key = format!("forward.access_header_names[{i}]");
            match http::HeaderName::from_bytes(text.trim().as_bytes()) {
                Err(_) => errors.push(err(&key, format!("\"{text}\" is not a header name; write e.g. \"Authorization\""))),
                Ok(name) if crate::policy::never_from_access_header(&name) => errors.push(err(
                    &key,
                    format!("\"{text}\" can never be set by access_header: hosts route on it, identify the client by it, or it frames the request; remove it (only credentials such as \"Authorization\" or \"Cookie\" belong here)"),
                )),
                Ok(name) if !out.access_header_names.contains(&name) => out.access_header_names.push(name),
                Ok(_) => {}
            }
        }
    }
    out
}

/// `[rate_limit]`.
pub fn validate_rate_limit(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Option<RateLimitConfig> {
    let start = errors.len();
    let rl = &raw.rate_limit;
    let max_tracked_keys = match rl.max_tracked_keys.unwrap_or(default::TRACKED_ENTRIES) {
        n @ 1000..=100_000_000 => n as usize,
        n => {
            errors.push(err(
                "rate_limit.max_tracked_keys",
                format!("{n} is out of range; use 1000-100000000 (about 40 bytes each)"),
            ));
            0
        }
    };
    let rate_limit = RateLimitConfig {
        max_tracked_keys,
        per_ip: limit(errors, "rate_limit.per_ip", rl.per_ip.as_ref()),
        per_token: limit(errors, "rate_limit.per_token", rl.per_token.as_ref()),
        per_file: limit(errors, "rate_limit.per_file", rl.per_file.as_ref()),
        failed_proofs: failed_proofs(errors, rl.failed_proofs.as_ref()),
    };
    (errors.len() == start).then_some(rate_limit)
}

/// `[operations]`.
pub fn validate_operations(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Option<OperationRules> {
    let start = errors.len();
    let ops = &raw.operations;
    let mut deny = Vec::new();
    for (i, name) in ops.deny.iter().flatten().enumerate() {
        if let Some(op) = operation(errors, &format!("operations.deny[{i}]"), name) {
            deny.push(op);
        }
    }
    let max_body = per_operation(errors, "operations.max_body", ops.max_body.as_ref(), |errors, key, v| {
        byte_size(v).map_err(|e| errors.push(err(key, e))).ok()
    });
    let read_timeout = per_operation(errors, "operations.read_timeout", ops.read_timeout.as_ref(), |errors, key, v| {
        duration(errors, key, Some(v), "0s")
    });
    (errors.len() == start).then_some(OperationRules { deny, max_body, read_timeout })
}

#[cfg(test)]
mod tests {

    #[test]
    fn failed_proofs_is_on_by_default_each_key_alone_and_burst_0_turns_it_off() {
        let budget = |extra: &str| crate::config::load_with(extra).map(|c| c.first_route().rate_limit.failed_proofs);
        assert_eq!(budget(""), Ok(Some(Budget { per_second: 1.0, burst: 60 })));
        assert_eq!(budget("[rate_limit.failed_proofs]\nburst = 5"), Ok(Some(Budget { per_second: 1.0, burst: 5 })));
        assert_eq!(
            budget("[rate_limit.failed_proofs]\nper_second = 0.5"),
            Ok(Some(Budget { per_second: 0.5, burst: 60 }))
        );
        assert_eq!(budget("[rate_limit.failed_proofs]\nburst = 0"), Ok(None));
        assert_eq!(
            budget("[rate_limit.failed_proofs]\nburst = -1"),
            Err(vec!["rate_limit.failed_proofs.burst".into()])
        );
        assert_eq!(
            budget("[rate_limit.failed_proofs]\nper_second = 0"),
            Err(vec!["rate_limit.failed_proofs.per_second".into()])
        );
        let text = crate::config::load_errors_text("[rate_limit.failed_proofs]\nburst = -1");
        assert!(text.contains("or 0 to turn it off"), "{text}");
    }

    #[test]
    fn an_override_no_operation_has_takes_put_relative_files_rules_kind_by_kind() {
        let custom = Operation::from_config_name("COBALT").unwrap();
        let rules = OperationRules {
            deny: vec![Operation::PutRelativeFile],
            max_body: vec![(Operation::PutRelativeFile, 10), (custom, 20)],
            read_timeout: vec![(Operation::PutRelativeFile, Duration::from_secs(5))],
        };
        for op in [Operation::OtherOverride, custom] {
            assert!(rules.denies(op), "{op}: PutRelativeFile's deny, naming it elsewhere lifts nothing");
            assert_eq!(rules.read_timeout(op), Some(Duration::from_secs(5)), "{op}");
        }
        assert_eq!(rules.max_body(Operation::OtherOverride), Some(10));
        assert_eq!(rules.max_body(custom), Some(20), "named: its own");
        assert!(!rules.denies(Operation::Lock) && rules.max_body(Operation::Lock).is_none());
    }
    use super::*;
    use crate::config::load_with as load;

    #[test]
    fn full_policy_loads() {
        let c = load(
            r#"
            [proof]
            allow_unsigned_from = ["192.0.2.10/32", "2001:db8::1"]
            exempt_paths = ["/index.php/apps/richdocuments/wopi/settings"]
            [ip]
            allow = ["10.0.0.0/8", "2001:db8::/32"]
            trusted_proxies = ["127.0.0.1/32"]
            forwarded_header = "forwarded"
            [rate_limit]
            max_tracked_keys = 50000
            [rate_limit.per_ip]
            per_second = 50
            burst = 100
            [rate_limit.per_token]
            per_second = 2.5
            burst = 10
            [rate_limit.per_token.operations]
            PutFile = { per_second = 1, burst = 5 }
            DELETE = { per_second = 0.1, burst = 1 }
            [rate_limit.per_file.operations.PutRelativeFile]
            per_second = 1
            burst = 2
            [operations]
            deny = ["DeleteFile", "RENAME_FILE"]
            [operations.max_body]
            PutFile = "512MiB"
            PutUserInfo = 1024
            [operations.read_timeout]
            PutFile = "15m"
            Lock = "10s"
            [forward]
            verified_header = true
            [forward_auth]
            path = "/_wopi-guard/auth"
            uri_header = "x-forwarded-uri"
        "#,
        )
        .unwrap();
        let p = &c.policy(c.first_route());
        assert!(p.ip.allow.admits("10.2.3.4".parse().unwrap()));
        assert!(c.first_route().proof.allow_unsigned_from.contains("2001:db8::1".parse().unwrap()));
        assert!(c.first_route().proof.exempt_paths.is_protected(b"/index.php/apps/richdocuments/wopi/settings?x"));
        assert_eq!(p.rate_limit.max_tracked_keys, 50000);
        assert_eq!(p.rate_limit.per_ip.as_ref().unwrap().general, Some(Budget { per_second: 50.0, burst: 100 }));
        let token = p.rate_limit.per_token.as_ref().unwrap();
        assert_eq!(token.operations.len(), 2);
        assert!(token.operations.contains(&(Operation::DeleteFile, Budget { per_second: 0.1, burst: 1 })));
        assert_eq!(p.rate_limit.per_file.as_ref().unwrap().general, None);
        assert_eq!(p.operations.deny, vec![Operation::DeleteFile, Operation::RenameFile]);
        assert_eq!(p.operations.max_body(Operation::PutFile), Some(512 << 20));
        assert_eq!(p.operations.max_body(Operation::PutUserInfo), Some(1024));
        assert_eq!(p.operations.max_body(Operation::GetFile), None);
        assert_eq!(p.operations.read_timeout(Operation::Lock), Some(Duration::from_secs(10)));
        assert!(p.forward.verified_header);
        assert_eq!(p.forward_auth.path.as_deref(), Some("/_wopi-guard/auth"));
        assert_eq!(p.forward_auth.headers, ForwardAuthHeaders::ForwardedUri);
        assert_eq!(p.ip.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(p.listener_scheme, Scheme::Http);
        // Defaults: X-Forwarded-For, nginx's X-Original-URI.
        let d = load("").unwrap();
        assert_eq!(
            (d.first_route().ip.forwarded_header, d.forward_auth.headers),
            (ForwardedHeader::XForwardedFor, ForwardAuthHeaders::OriginalUri)
        );
    }

    #[test]
    fn every_policy_error_names_its_key() {
        let keys = load(
            r#"
            [proof]
            allow_unsigned_from = ["nope"]
            exempt_paths = ["relative"]
            [ip]
            allow = ["10.0.0.0/33"]
            trusted_proxies = ["x"]
            forwarded_header = "x-real-ip"
            [rate_limit]
            max_tracked_keys = 5
            [rate_limit.per_ip]
            per_second = 0
            burst = 0
            [rate_limit.per_token]
            per_second = 5
            [rate_limit.per_file.operations]
            Explode = { per_second = 1, burst = 1 }
            [operations]
            deny = ["Nuke"]
            [operations.max_body]
            PutFile = "12 parsecs"
            [operations.read_timeout]
            Lock = "soon"
            [forward_auth]
            path = "auth"
            uri_header = "x-original-url"
        "#,
        )
        .unwrap_err();
        for key in [
            "proof.allow_unsigned_from[0]",
            "proof.exempt_paths[0]",
            "ip.allow[0]",
            "ip.trusted_proxies[0]",
            "rate_limit.max_tracked_keys",
            "rate_limit.per_ip.per_second",
            "rate_limit.per_ip.burst",
            "rate_limit.per_token",
            "rate_limit.per_file.operations.Explode",
            "operations.deny[0]",
            "operations.max_body.PutFile",
            "operations.read_timeout.Lock",
            "forward_auth.path",
            "ip.forwarded_header",
            "forward_auth.uri_header",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn empty_allow_list_refuses_everyone_and_is_warned_about() {
        let c = load("[ip]\nallow = []").unwrap();
        assert!(!c.first_route().ip.allow.admits("127.0.0.1".parse().unwrap()));
        assert!(c.warnings().iter().any(|w| w.contains("ip.allow is empty")));
        let c = load("").unwrap();
        assert_eq!(c.first_route().ip.allow, AllowList::Everyone);
    }

    #[test]
    fn sizes() {
        let v = |s: &str| byte_size(&toml::Value::String(s.into()));
        assert_eq!(v("512MiB"), Ok(512 << 20));
        assert_eq!(v("64 KiB"), Ok(64 << 10));
        assert_eq!(v("100MB"), Ok(100_000_000));
        assert_eq!(v("1g"), Ok(1 << 30));
        assert_eq!(byte_size(&toml::Value::Integer(7)), Ok(7));
        assert!(v("MiB").is_err());
        assert!(v("5 furlongs").is_err());
        assert!(byte_size(&toml::Value::Integer(-1)).is_err());
        assert!(v("99999999999999999999GiB").is_err());
    }
}
