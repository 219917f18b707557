//! Who the client is: the socket peer, or — only when the peer is a trusted proxy — the
//! right-most untrusted address of `Forwarded` / `X-Forwarded-For`. And whether it may come in.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// A set of networks. Addresses are compared in canonical form (IPv4-mapped IPv6 as IPv4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetList(Vec<IpNet>);

impl NetList {
    /// The networks, as configured.
    pub fn new(nets: Vec<IpNet>) -> Self {
        NetList(nets)
    }

    /// True when `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when there are no networks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which clients may come in at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// `[ip] allow` absent: no IP filter.
    Everyone,
    /// Only these networks. An empty list refuses everyone (and `check` warns about it).
    Only(NetList),
}

impl AllowList {
    /// True when `client` may come in.
    pub fn admits(&self, client: IpAddr) -> bool {
        match self {
            AllowList::Everyone => true,
            AllowList::Only(nets) => nets.contains(client),
        }
    }
}

/// Which forwarding header a trusted proxy maintains (`[ip] forwarded_header`). Only that one
/// is read; the other is ignored and removed before forwarding, since proxies that maintain one
/// pass the client's own copy of the other through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, Traefik, HAProxy `option forwardfor`, AWS ALB): the default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lowercase.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }

    /// The other one, which is never read.
    pub fn other(self) -> ForwardedHeader {
        match self {
            ForwardedHeader::XForwardedFor => ForwardedHeader::Forwarded,
            ForwardedHeader::Forwarded => ForwardedHeader::XForwardedFor,
        }
    }
}

/// Why the client address of a request cannot be determined (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownClient {
    /// The trusted proxy's forwarding header has an entry that is not an address.
    Unparseable,
    /// The connection has no IP peer (not a TCP connection).
    NoPeer,
}

impl UnknownClient {
    /// Says why, for logs.
    pub fn reason(self) -> &'static str {
        match self {
            UnknownClient::Unparseable => {
                "a trusted proxy forwarded a client entry that is not an IP address (ip, ip:port, [ipv6]:port)"
            }
            UnknownClient::NoPeer => "the connection has no IP peer",
        }
    }
}

/// The client address of a request: the peer, or, when the peer is a trusted proxy, the
/// right-most address of `which` that is not itself a trusted proxy. An entry on the way there
/// that is not an address makes the client unknown (never the proxy itself, and never a key
/// shared with other unknown clients).
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &NetList,
    which: ForwardedHeader,
) -> Result<IpAddr, UnknownClient> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Ok(peer);
    }
    let chain = forwarded_chain(headers, which);
    // Right to left: the first address not of a trusted proxy is the client.
    let mut last = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => last = *ip,
            Some(ip) => return Ok(*ip),
            None => return Err(UnknownClient::Unparseable),
        }
    }
    Ok(last)
}

/// The forwarding chain of header `which`, left (origin) to right (nearest); empty when absent.
/// `None` entries are not addresses.
pub fn forwarded_chain(headers: &HeaderMap, which: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let values = headers.get_all(which.name()).iter().map(|v| v.as_bytes());
    match which {
        ForwardedHeader::Forwarded => values
            .flat_map(|value| value.split(|&b| b == b','))
            .filter_map(|element| {
                element.split(|&b| b == b';').find_map(|pair| {
                    let pair = pair.trim_ascii();
                    let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                    name.eq_ignore_ascii_case(b"for").then(|| &value[1..])
                })
            })
            .map(|for_| parse_hop(unquote(for_.trim_ascii())))
            .collect(),
        ForwardedHeader::XForwardedFor => {
            values.flat_map(|v| v.split(|&b| b == b',')).map(|hop| parse_hop(hop.trim_ascii())).collect()
        }
    }
}

fn unquote(value: &[u8]) -> &[u8] {
    value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value)
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`, and an
/// IPv6 zone id (`fe80::1%eth0`) dropped.
fn parse_hop(value: &[u8]) -> Option<IpAddr> {
    if let Some(rest) = value.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let after = &rest[end + 1..];
        let port_ok = after.is_empty() || after.strip_prefix(b":").is_some_and(is_port);
        return port_ok.then(|| parse_ip(&rest[..end])).flatten();
    }
    match value.iter().filter(|&&b| b == b':').count() {
        1 => {
            let colon = value.iter().position(|&b| b == b':')?;
            is_port(&value[colon + 1..]).then(|| parse_ip(&value[..colon])).flatten()
        }
        _ => parse_ip(value),
    }
}

fn is_port(text: &[u8]) -> bool {
    !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit)
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    // An IPv6 zone id names an interface of the sender, not a different client.
    let text = match text.split_once('%') {
        Some((addr, zone)) if addr.contains(':') && !zone.is_empty() => addr,
        _ => text,
    };
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> NetList {
        NetList::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    use crate::policy::test_headers as headers;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_v6_and_mapped_addresses() {
        let allow = AllowList::Only(nets(&["10.0.0.0/8", "2001:db8::/32"]));
        assert!(allow.admits(ip("10.1.2.3")));
        assert!(allow.admits(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(allow.admits(ip("2001:db8::7")));
        assert!(!allow.admits(ip("11.0.0.1")));
        assert!(!allow.admits(ip("::ffff:11.0.0.1")));
        assert!(!allow.admits(ip("2001:db9::1")));
        assert!(!AllowList::Only(nets(&[])).admits(ip("10.1.2.3")), "empty list refuses everyone");
        assert!(AllowList::Everyone.admits(ip("192.0.2.1")));
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_peers() {
        let trusted = nets(&["127.0.0.1/32", "10.9.0.0/16"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.5, 10.9.0.2")]);
        // Untrusted peer: its forwarded headers are ignored.
        assert_eq!(client_address(ip("198.51.100.1"), &h, &trusted, XFF), Ok(ip("198.51.100.1")));
        // Trusted peer: right-most untrusted hop.
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Ok(ip("203.0.113.5")));
        assert_eq!(client_address(ip("::ffff:127.0.0.1"), &h, &trusted, XFF), Ok(ip("203.0.113.5")));
        // A spoofed left-most entry does not win over the right-most untrusted one.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 203.0.113.5")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Ok(ip("203.0.113.5")));
        // Several headers form one chain.
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 10.9.0.3")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Ok(ip("2.2.2.2")));
        // All hops trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.9.0.5, 10.9.0.6")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Ok(ip("10.9.0.5")));
        // Garbage from a trusted proxy: unknown client, never the proxy.
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Err(UnknownClient::Unparseable));
        // No header: the peer.
        assert_eq!(client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted, XFF), Ok(ip("127.0.0.1")));
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const RFC: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn only_the_configured_header_is_read() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        // The default reads X-Forwarded-For only: a client's own `Forwarded` passed through by
        // nginx / Traefik / HAProxy / ALB decides nothing.
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Ok(ip("198.51.100.9")));
        let forwarded_only = headers(&[("forwarded", "for=192.0.2.7")]);
        assert_eq!(client_address(ip("127.0.0.1"), &forwarded_only, &trusted, XFF), Ok(ip("127.0.0.1")));
        // `forwarded_header = "forwarded"` reads RFC 7239 only.
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, RFC), Ok(ip("2001:db8:cafe::17")));
        let xff_only = headers(&[("x-forwarded-for", "192.0.2.7")]);
        assert_eq!(client_address(ip("127.0.0.1"), &xff_only, &trusted, RFC), Ok(ip("127.0.0.1")));
        let h = headers(&[("forwarded", r#"for="192.0.2.43:47011""#)]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, RFC), Ok(ip("192.0.2.43")));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, RFC), Err(UnknownClient::Unparseable));
    }

    #[test]
    fn ports_and_zone_ids_are_addresses() {
        let trusted = nets(&["127.0.0.1/32"]);
        for (entry, want) in [
            ("203.0.113.9:1111", "203.0.113.9"),
            ("[2001:db8::5]:443", "2001:db8::5"),
            ("[2001:db8::5]", "2001:db8::5"),
            ("2001:db8::5", "2001:db8::5"),
            ("fe80::1%eth0", "fe80::1"),
            ("[fe80::1%25eth0]:80", "fe80::1"),
        ] {
            let h = headers(&[("x-forwarded-for", entry)]);
            let got = client_address(ip("127.0.0.1"), &h, &trusted, XFF);
            assert_eq!(got, Ok(ip(want)), "{entry}");
        }
        for bad in ["203.0.113.9:", "203.0.113.9:99999x", "[2001:db8::5]x", "host.example:80", "", "unknown"] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted, XFF), Err(UnknownClient::Unparseable), "{bad:?}");
        }
    }
}
