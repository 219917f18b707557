//! Which route a request belongs to, by the host it is for, with no Pingora in sight.
//!
//! The host is the one the WOPI host will act on: an absolute-form request target's authority
//! (RFC 9112 §3.2.2: it wins over `Host`), else the `Host` header. A request whose `Host` is
//! repeated, malformed, or names another host than its absolute-form target is refused rather
//! than routed by a guess: the gate and the host must agree on which host was verified.
//! A Traefik forward-auth subrequest names the original host in `X-Forwarded-Host` instead
//! ([`RouteTable::route_request`]).

use http::HeaderMap;

use crate::config::{ForwardAuthConfig, RouteHost};
use crate::policy::ForwardAuthHeaders;
use crate::refusal::Refusal;

/// Where a request goes ([`RouteTable::route_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The route's index.
    pub route: usize,
    /// The request is for the forward-auth endpoint (`[forward_auth] path`).
    pub forward_auth: bool,
}

/// The routes' hosts, for choosing one per request.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Lowercase names, each with its route's index.
    names: std::collections::HashMap<Box<[u8]>, usize>,
    /// The `*` route, if any.
    any: Option<usize>,
    /// `[[routes]]` is configured: hosts are read. Without it every request goes to route 0.
    routed: bool,
}

/// The longest host name looked up (DNS allows 253; a longer one matches no route).
const MAX_HOST: usize = 256;

impl RouteTable {
    /// A table over `hosts` (route `i` serves `hosts[i]`).
    pub fn new(hosts: &[RouteHost], routed: bool) -> Self {
        let mut names = std::collections::HashMap::new();
        let mut any = None;
        for (i, host) in hosts.iter().enumerate() {
            match host {
                RouteHost::Any => any = any.or(Some(i)),
                RouteHost::Name(name) => {
                    let name = match bracketed_ipv6(name.as_bytes()) {
                        Some(ip) => format!("[{ip}]"),
                        None => name.to_ascii_lowercase(),
                    };
                    names.entry(name.into_bytes().into()).or_insert(i);
                }
            }
        }
        RouteTable { names, any, routed }
    }

    /// Whether requests are routed by host (the file has `[[routes]]`).
    pub fn is_routed(&self) -> bool {
        self.routed
    }

    /// The route for a request as the proxy receives it, forward-auth subrequests included.
    ///
    /// A subrequest to `[forward_auth] path` is for the host of the original request, not its
    /// own: nginx's `auth_request` passes that in `Host` (`proxy_set_header Host $host`), like any
    /// request; Traefik's forwardAuth (`uri_header = "x-forwarded-uri"`) sends its own `Host`
    /// and the original in `X-Forwarded-Host`, which is then the host, present exactly once
    /// (else `Err(ForwardAuthHeaders)`). Whether the peer may ask is the route's to say.
    pub fn route_request(
        &self,
        raw_target: &[u8],
        headers: &HeaderMap,
        forward_auth: &ForwardAuthConfig,
    ) -> Result<Routed, Refusal> {
        let is_auth =
            forward_auth.path.as_deref().is_some_and(|p| raw_target.split(|&b| b == b'?').next() == Some(p.as_bytes()));
        let route = if is_auth && forward_auth.headers == ForwardAuthHeaders::ForwardedUri {
            self.route_forwarded(headers)?
        } else {
            self.route(raw_target, headers)?
        };
        Ok(Routed { route, forward_auth: is_auth })
    }

    /// The route for a request: `Err(HostUnknown)` when no route serves its host,
    /// `Err(HostInvalid)` when its host cannot be told ([`request_host`]).
    pub fn route(&self, raw_target: &[u8], headers: &HeaderMap) -> Result<usize, Refusal> {
        if !self.routed {
            return Ok(0);
        }
        self.by_host(request_host(raw_target, headers)?)
    }

    /// The route for a Traefik forward-auth subrequest: by its one `X-Forwarded-Host`.
    fn route_forwarded(&self, headers: &HeaderMap) -> Result<usize, Refusal> {
        if !self.routed {
            return Ok(0);
        }
        let mut values = headers.get_all("x-forwarded-host").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Refusal::ForwardAuthHeaders);
        };
        self.by_host(Some(host_of(value.as_bytes()).ok_or(Refusal::HostInvalid)?))
    }

    /// The route serving `host` (`None`: no host was sent), else the `*` route. An IPv6 host is
    /// looked up in its canonical text (`[2001:db8:0::1]` is `[2001:db8::1]`), as routes write it.
    fn by_host(&self, host: Option<&[u8]>) -> Result<usize, Refusal> {
        if let Some(ip) = host.and_then(bracketed_ipv6) {
            let canonical = format!("[{ip}]");
            return self.names.get(canonical.as_bytes()).copied().or(self.any).ok_or(Refusal::HostUnknown);
        }
        let by_name = host.filter(|h| h.len() <= MAX_HOST).and_then(|h| {
            let mut lower = [0u8; MAX_HOST];
            let lower = &mut lower[..h.len()];
            lower.copy_from_slice(h);
            lower.make_ascii_lowercase();
            self.names.get(&*lower).copied()
        });
        by_name.or(self.any).ok_or(Refusal::HostUnknown)
    }
}

/// The address of a bracketed IPv6 host (`[2001:db8::1]`).
fn bracketed_ipv6(host: &[u8]) -> Option<std::net::Ipv6Addr> {
    let inner = host.strip_prefix(b"[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// The host a request is for, without port or trailing dot (`None`: no `Host` and an
/// origin-form target, as HTTP/1.0 sends).
pub fn request_host<'a>(raw_target: &'a [u8], headers: &'a HeaderMap) -> Result<Option<&'a [u8]>, Refusal> {
    let mut values = headers.get_all(http::header::HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(Refusal::HostInvalid);
    }
    let header = header.map(|v| host_of(v.as_bytes()).ok_or(Refusal::HostInvalid)).transpose()?;
    let Some(authority) = absolute_authority(raw_target) else { return Ok(header) };
    let target = host_of(authority).ok_or(Refusal::HostInvalid)?;
    match header {
        Some(h) if !h.eq_ignore_ascii_case(target) => Err(Refusal::HostInvalid),
        _ => Ok(Some(target)),
    }
}

/// The authority of an absolute-form target (`http://host:port/path`), if it is one.
fn absolute_authority(raw_target: &[u8]) -> Option<&[u8]> {
    let at = raw_target.windows(3).position(|w| w == b"://")?;
    let scheme = &raw_target[..at];
    if scheme.is_empty() || !scheme.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return None;
    }
    let rest = &raw_target[at + 3..];
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `host[:port]` → `host`, without a trailing dot; `None` when it is not a host: empty, user
/// info, a port that is not digits, stray brackets or colons, or bytes no host name has.
fn host_of(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (host, port) = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&b| b == b']')?;
        let inner = std::str::from_utf8(&value[1..close]).ok()?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        (&value[..=close], &value[close + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        }
    };
    let port_ok = port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit));
    let host = host.strip_suffix(b".").unwrap_or(host);
    let name_ok = host.first() == Some(&b'[')
        || (!host.is_empty() && host.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    (port_ok && name_ok).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for h in hosts {
            map.append(http::header::HOST, h.parse().unwrap());
        }
        map
    }

    fn table() -> RouteTable {
        let hosts = [
            RouteHost::Name("cloud-a.example.com".into()),
            RouteHost::Name("[2001:db8:0::1]".into()),
            RouteHost::Name("cloud-b.example.com".into()),
        ];
        RouteTable::new(&hosts, true)
    }

    #[test]
    fn the_host_picks_the_route_port_and_case_ignored() {
        let t = table();
        let route = |host: &str| t.route(b"/wopi/files/1", &headers(&[host]));
        assert_eq!(route("cloud-a.example.com"), Ok(0));
        assert_eq!(route("Cloud-A.Example.COM:8443"), Ok(0));
        assert_eq!(route("cloud-a.example.com."), Ok(0));
        assert_eq!(route("[2001:DB8::1]:443"), Ok(1));
        assert_eq!(route("[2001:db8:0::1]"), Ok(1), "another text of the same address");
        assert_eq!(route("[2001:0db8:0000:0000:0000:0000:0000:0001]:8443"), Ok(1));
        assert_eq!(route("[2001:db8::2]"), Err(Refusal::HostUnknown));
        assert_eq!(route("cloud-b.example.com"), Ok(2));
        assert_eq!(route("cloud-c.example.com"), Err(Refusal::HostUnknown));
        assert_eq!(route(&"a".repeat(300)), Err(Refusal::HostUnknown));
        assert_eq!(t.route(b"/wopi/files/1", &HeaderMap::new()), Err(Refusal::HostUnknown), "no Host, no `*`");
    }

    #[test]
    fn the_any_route_takes_every_other_host() {
        let t = RouteTable::new(&[RouteHost::Name("a.example".into()), RouteHost::Any], true);
        assert_eq!(t.route(b"/", &headers(&["a.example"])), Ok(0));
        assert_eq!(t.route(b"/", &headers(&["b.example"])), Ok(1));
        assert_eq!(t.route(b"/", &HeaderMap::new()), Ok(1));
    }

    #[test]
    fn without_routes_every_request_is_route_zero_and_no_host_is_read() {
        let t = RouteTable::new(&[RouteHost::Any], false);
        assert_eq!(t.route(b"/", &headers(&["a", "b"])), Ok(0));
        assert!(!t.is_routed());
    }

    #[test]
    fn a_host_that_cannot_be_told_is_refused() {
        let t = table();
        for bad in
            [&["a.example", "cloud-a.example.com"][..], &["cloud-a.example.com:x"], &["a b"], &["[::1"], &["u@h"]]
        {
            assert_eq!(t.route(b"/", &headers(bad)), Err(Refusal::HostInvalid), "{bad:?}");
        }
    }

    #[test]
    fn an_absolute_target_names_the_host_and_must_agree_with_host() {
        let t = table();
        let target = b"http://cloud-b.example.com:80/wopi/files/1?access_token=x";
        assert_eq!(t.route(target, &HeaderMap::new()), Ok(2));
        assert_eq!(t.route(target, &headers(&["CLOUD-B.example.com"])), Ok(2));
        assert_eq!(t.route(target, &headers(&["cloud-a.example.com"])), Err(Refusal::HostInvalid));
        assert_eq!(t.route(b"http://user@cloud-b.example.com/", &HeaderMap::new()), Err(Refusal::HostInvalid));
        // A path that only contains "://" further on is origin-form.
        assert_eq!(t.route(b"/wopi/files/1?u=http://cloud-b.example.com/", &headers(&["cloud-a.example.com"])), Ok(0));
    }

    #[test]
    fn a_forward_auth_subrequest_is_routed_by_the_original_host() {
        let t = table();
        let with = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (n, v) in pairs {
                map.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
            }
            map
        };
        let auth = |headers| ForwardAuthConfig { path: Some("/_auth".into()), headers };
        let (nginx, traefik) = (auth(ForwardAuthHeaders::OriginalUri), auth(ForwardAuthHeaders::ForwardedUri));
        let guard = ("host", "wopi-guard:8080");
        let routed = |route, forward_auth| Ok(Routed { route, forward_auth });

        // nginx passes the original Host; X-Forwarded-Host is not read.
        let h = with(&[("host", "cloud-b.example.com"), ("x-forwarded-host", "cloud-a.example.com")]);
        assert_eq!(t.route_request(b"/_auth", &h, &nginx), routed(2, true));
        // Traefik: its own Host, the original in X-Forwarded-Host (port and case ignored).
        let h = with(&[guard, ("x-forwarded-host", "Cloud-B.example.com:443")]);
        assert_eq!(t.route_request(b"/_auth?x=1", &h, &traefik), routed(2, true));
        assert_eq!(t.route_request(b"/_auth", &with(&[guard]), &traefik), Err(Refusal::ForwardAuthHeaders));
        let two =
            with(&[guard, ("x-forwarded-host", "cloud-a.example.com"), ("x-forwarded-host", "cloud-b.example.com")]);
        assert_eq!(t.route_request(b"/_auth", &two, &traefik), Err(Refusal::ForwardAuthHeaders));
        let bad = with(&[guard, ("x-forwarded-host", "cloud-a.example.com, evil")]);
        assert_eq!(t.route_request(b"/_auth", &bad, &traefik), Err(Refusal::HostInvalid));
        let unknown = with(&[("host", "cloud-a.example.com"), ("x-forwarded-host", "cloud-c.example.com")]);
        assert_eq!(t.route_request(b"/_auth", &unknown, &traefik), Err(Refusal::HostUnknown));
        // Any other path, Traefik or not, goes by its own Host; X-Forwarded-Host is a client's.
        let h = with(&[("host", "cloud-a.example.com"), ("x-forwarded-host", "cloud-b.example.com")]);
        assert_eq!(t.route_request(b"/_auth/x", &h, &traefik), routed(0, false));
        assert_eq!(t.route_request(b"/wopi/files/1", &h, &traefik), routed(0, false));
        let off = ForwardAuthConfig { path: None, headers: ForwardAuthHeaders::ForwardedUri };
        assert_eq!(t.route_request(b"/_auth", &h, &off), routed(0, false));
        // Without [[routes]] nothing is read.
        let one = RouteTable::new(&[RouteHost::Any], false);
        assert_eq!(one.route_request(b"/_auth", &with(&[guard]), &traefik), routed(0, true));
    }
}
