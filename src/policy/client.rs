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
    /// True when `client` may come in. An unknown client (unparseable forwarded address) may
    /// come in only when there is no filter.
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        match (self, client) {
            (AllowList::Everyone, _) => true,
            (AllowList::Only(nets), Some(ip)) => nets.contains(ip),
            (AllowList::Only(_), None) => false,
        }
    }
}

/// The client address of a request: `None` when a trusted proxy forwarded an address that
/// cannot be parsed (treated as unknown, never as the proxy itself).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &NetList) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let chain = forwarded_chain(headers);
    let Some(chain) = chain else { return Some(peer) };
    // Right to left: the first address not of a trusted proxy is the client.
    let mut last = Some(peer);
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => last = Some(*ip),
            other => return *other,
        }
    }
    last
}

/// The forwarding chain, left (origin) to right (nearest): RFC 7239 `Forwarded: for=` when
/// present, otherwise `X-Forwarded-For`. `None` when neither header is present.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let forwarded: Vec<&[u8]> = headers.get_all("forwarded").iter().map(|v| v.as_bytes()).collect();
    if !forwarded.is_empty() {
        let mut hops = Vec::new();
        for value in forwarded {
            for element in value.split(|&b| b == b',') {
                let for_ = element.split(|&b| b == b';').find_map(|pair| {
                    let pair = pair.trim_ascii();
                    let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                    name.eq_ignore_ascii_case(b"for").then(|| &value[1..])
                });
                if let Some(for_) = for_ {
                    hops.push(parse_forwarded_for(for_));
                }
            }
        }
        return Some(hops);
    }
    let xff: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
    if xff.is_empty() {
        return None;
    }
    Some(xff.iter().flat_map(|v| v.split(|&b| b == b',')).map(|hop| parse_ip(hop.trim_ascii())).collect())
}

/// `for=` value: `1.2.3.4`, `"1.2.3.4:80"`, `"[2001:db8::1]:80"`, `"[2001:db8::1]"`.
fn parse_forwarded_for(value: &[u8]) -> Option<IpAddr> {
    let value = value.trim_ascii();
    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    if let Some(rest) = value.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        return parse_ip(&rest[..end]);
    }
    match value.iter().filter(|&&b| b == b':').count() {
        1 => parse_ip(&value[..value.iter().position(|&b| b == b':')?]),
        _ => parse_ip(value),
    }
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text).ok()?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> NetList {
        NetList::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, v.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_v6_and_mapped_addresses() {
        let allow = AllowList::Only(nets(&["10.0.0.0/8", "2001:db8::/32"]));
        assert!(allow.admits(Some(ip("10.1.2.3"))));
        assert!(allow.admits(Some(ip("::ffff:10.1.2.3"))), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(allow.admits(Some(ip("2001:db8::7"))));
        assert!(!allow.admits(Some(ip("11.0.0.1"))));
        assert!(!allow.admits(Some(ip("::ffff:11.0.0.1"))));
        assert!(!allow.admits(Some(ip("2001:db9::1"))));
        assert!(!allow.admits(None));
        assert!(!AllowList::Only(nets(&[])).admits(Some(ip("10.1.2.3"))), "empty list refuses everyone");
        assert!(AllowList::Everyone.admits(None));
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_peers() {
        let trusted = nets(&["127.0.0.1/32", "10.9.0.0/16"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.5, 10.9.0.2")]);
        // Untrusted peer: its forwarded headers are ignored.
        assert_eq!(client_address(ip("198.51.100.1"), &h, &trusted), Some(ip("198.51.100.1")));
        // Trusted peer: right-most untrusted hop.
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("203.0.113.5")));
        assert_eq!(client_address(ip("::ffff:127.0.0.1"), &h, &trusted), Some(ip("203.0.113.5")));
        // A spoofed left-most entry does not win over the right-most untrusted one.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 203.0.113.5")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("203.0.113.5")));
        // Several headers form one chain.
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 10.9.0.3")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("2.2.2.2")));
        // All hops trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.9.0.5, 10.9.0.6")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("10.9.0.5")));
        // Garbage from a trusted proxy: unknown client, never the proxy.
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), None);
        // No header: the peer.
        assert_eq!(client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted), Some(ip("127.0.0.1")));
    }

    #[test]
    fn rfc7239_forwarded_wins_over_x_forwarded_for() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("2001:db8:cafe::17")));
        let h = headers(&[("forwarded", r#"for="192.0.2.43:47011""#)]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), Some(ip("192.0.2.43")));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), None);
    }
}
