//! `discovery.resolve_all`: every address a discovery URL's host name resolves to, one office
//! node each, resolved again at every fetch.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How host names are resolved for `resolve_all`.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The system's resolver (`/etc/hosts`, DNS).
    #[default]
    System,
    /// Fixed answers per host name, for tests and embedding; a name not listed does not resolve.
    /// Never read from the configuration file.
    Fixed(BTreeMap<String, Vec<IpAddr>>),
    /// Answers that the embedder changes between fetches (pods that come and go), for tests.
    /// Never read from the configuration file.
    Changing(Arc<Mutex<BTreeMap<String, Vec<IpAddr>>>>),
}

impl PartialEq for Resolver {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Resolver::System, Resolver::System) => true,
            (Resolver::Fixed(a), Resolver::Fixed(b)) => a == b,
            (Resolver::Changing(a), Resolver::Changing(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Resolver {}

impl Resolver {
    /// Every address of `host` (an IP literal is its own address), sorted, without repeats.
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut addresses: Vec<IpAddr> = match self {
            Resolver::System => tokio::net::lookup_host((host, port)).await?.map(|a| a.ip()).collect(),
            Resolver::Fixed(map) => map.get(&host.to_ascii_lowercase()).cloned().unwrap_or_default(),
            Resolver::Changing(map) => map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&host.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default(),
        };
        addresses.sort();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address")));
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_fixed_names_and_the_system_resolver() {
        let fixed = Resolver::Fixed(BTreeMap::from([(
            "office.test".to_string(),
            vec!["127.0.0.3".parse().unwrap(), "127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
        )]));
        let two: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
        assert_eq!(fixed.resolve("Office.TEST", 80).await.unwrap(), two);
        assert!(fixed.resolve("other.test", 80).await.is_err());
        assert_eq!(fixed.resolve("[::1]", 80).await.unwrap(), vec!["::1".parse::<IpAddr>().unwrap()]);
        let local = Resolver::System.resolve("localhost", 80).await.unwrap();
        assert!(local.iter().all(|ip| ip.is_loopback()) && !local.is_empty(), "{local:?}");
    }
}
