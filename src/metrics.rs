//! Prometheus metrics, lock-free: fixed label sets held in atomics, rendered as text on
//! `/metrics`. One [`Metrics`] per server (tests run several in one process).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::keys::{FetchObserver, KeySnapshot, RefreshOutcome};
use crate::operation::Operation;
use crate::refusal::Refusal;

/// The verdicts of `wopi_guard_requests_total` that are not refusals; every refusal's label
/// ([`Refusal::LABELS`]) follows them.
const ADMITTED_VERDICTS: [&str; 2] = ["forwarded", "upstream_error"];

/// Number of verdict labels: the admitted ones and every refusal.
const VERDICT_COUNT: usize = ADMITTED_VERDICTS.len() + Refusal::COUNT;

/// Every verdict label, in counter order.
pub fn verdicts() -> impl Iterator<Item = &'static str> {
    ADMITTED_VERDICTS.iter().chain(Refusal::LABELS).copied()
}

/// Outcomes of one discovery fetch, in counter order.
const FETCH_OUTCOMES: [&str; 4] = RefreshOutcome::LABELS;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 10.0];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram { buckets: Default::default(), count: AtomicU64::new(0), sum_nanos: AtomicU64::new(0) }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The counters of one route: its requests, its discovery fetches, its upstream members. Each
/// sample carries `route="host"` when the file has `[[routes]]`; without, the one route's
/// samples have no route label (as before routes existed).
pub struct RouteMetrics {
    /// `None`: no route label (the one route of a file without `[[routes]]`, and requests refused
    /// before a route was chosen).
    label: Option<String>,
    requests: Vec<AtomicU64>,
    would_refuse: Vec<AtomicU64>,
    /// Discovery fetch counters per source URL, every source ever configured (reloads add).
    sources: Mutex<Vec<(String, [AtomicU64; FETCH_OUTCOMES.len()])>>,
    /// The upstream's members in force (a reload replaces the list, keeping a kept member's).
    members: Mutex<Vec<Arc<MemberStats>>>,
}

/// The server's metrics.
pub struct Metrics {
    /// Requests refused before a route was chosen, and the one route of a file without
    /// `[[routes]]`.
    unrouted: Arc<RouteMetrics>,
    /// The `[[routes]]` in force, by host (a reload keeps a kept route's counters).
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    verification: Histogram,
    upstream: Histogram,
    /// Configuration reloads: applied, refused.
    reloads: [AtomicU64; 2],
    /// `rotation`: held keys a request proved (signed with it and with a trusted key).
    rotations_proved: AtomicU64,
    /// `[shared]`: Redis round trips.
    shared: Histogram,
    /// `[shared]`: failed calls, indexed by [`SharedError`].
    shared_errors: [AtomicU64; SharedError::ALL.len()],
    /// `[shared]`: 1 while `on_error` applies instead of Redis.
    shared_fallback: AtomicU64,
    /// `[shared]`: refusals from the local negative cache, with no Redis call.
    shared_local_refusals: AtomicU64,
    /// Connections open now.
    connections_open: AtomicU64,
    /// Connections closed by wopi-guard, indexed by [`ConnectionEvent`].
    connection_events: [AtomicU64; ConnectionEvent::ALL.len()],
}

/// One upstream member's state and counters: `wopi_guard_upstream_*{upstream}`. Kept across
/// reloads while the member stays configured.
#[derive(Debug)]
pub struct MemberStats {
    name: String,
    up: AtomicBool,
    requests: AtomicU64,
    errors: AtomicU64,
}

impl MemberStats {
    /// A member, up until a check or a failure says otherwise.
    pub fn new(name: &str) -> Self {
        MemberStats {
            name: name.to_string(),
            up: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// `host:port`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the member is taken to be up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks it up or down; whether that changed anything.
    pub fn set_up(&self, up: bool) -> bool {
        // Read first: every answer says "up", and a write per request would bounce the cache line.
        self.is_up() != up && self.up.swap(up, Ordering::AcqRel) != up
    }

    /// A request was sent its way (each attempt counts).
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt failed: no connection, or the connection failed before an answer.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why wopi-guard closed a connection itself: the `reason` label of
/// `wopi_guard_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Closed at once: `server.max_connections` were open.
    OverMaxConnections,
    /// Closed at once: `ip.max_connections` were open from its address.
    OverIpMaxConnections,
    /// Its header section did not arrive within `server.header_timeout`.
    HeaderTimeout,
    /// Its TLS handshake was not over within `server.tls_handshake_timeout`.
    TlsHandshakeTimeout,
}

impl ConnectionEvent {
    /// Every event, in label order.
    pub const ALL: [ConnectionEvent; 4] = [
        ConnectionEvent::OverMaxConnections,
        ConnectionEvent::OverIpMaxConnections,
        ConnectionEvent::HeaderTimeout,
        ConnectionEvent::TlsHandshakeTimeout,
    ];

    /// The metric label (the key whose limit closed it).
    pub fn label(self) -> &'static str {
        match self {
            ConnectionEvent::OverMaxConnections => "max_connections",
            ConnectionEvent::OverIpMaxConnections => "ip_max_connections",
            ConnectionEvent::HeaderTimeout => "header_timeout",
            ConnectionEvent::TlsHandshakeTimeout => "tls_handshake_timeout",
        }
    }
}

/// Why a `[shared]` Redis call failed: the `kind` label of `wopi_guard_shared_state_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// No answer within `[shared] timeout`.
    Timeout,
    /// Connecting, or the connection, failed.
    Connection,
    /// Redis answered an error.
    Server,
    /// The reply was not what the script returns.
    Reply,
}

impl SharedError {
    /// Every kind, in label order.
    pub const ALL: [SharedError; 4] =
        [SharedError::Timeout, SharedError::Connection, SharedError::Server, SharedError::Reply];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SharedError::Timeout => "timeout",
            SharedError::Connection => "connection",
            SharedError::Server => "server",
            SharedError::Reply => "reply",
        }
    }
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn index(refusal: Refusal) -> usize {
    ADMITTED_VERDICTS.len() + refusal.index()
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl RouteMetrics {
    fn new(label: Option<String>) -> Self {
        RouteMetrics {
            label,
            requests: counters(Operation::ALL.len() * VERDICT_COUNT),
            would_refuse: counters(Refusal::COUNT),
            sources: Mutex::new(Vec::new()),
            members: Mutex::new(Vec::new()),
        }
    }

    /// The route's host, when samples carry it.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// `route="host",` for a labelled route, else nothing: what opens a sample's labels.
    fn route_label(&self) -> String {
        self.label.as_deref().map_or_else(String::new, |l| format!("route=\"{}\",", escape(l)))
    }

    /// Registers discovery sources (after a reload), so their counters show from zero.
    pub fn add_sources(&self, sources: &[String]) {
        let mut known = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        for url in sources {
            if !known.iter().any(|(u, _)| u == url) {
                known.push((url.clone(), Default::default()));
            }
        }
    }

    fn op_index(op: Operation) -> usize {
        // A custom override is counted with the other overrides: the label set stays fixed.
        let op = if matches!(op, Operation::Custom(_)) { Operation::OtherOverride } else { op };
        Operation::ALL.iter().position(|o| *o == op).unwrap_or(Operation::ALL.len() - 1)
    }

    /// A request forwarded and answered.
    pub fn forwarded(&self, op: Operation) {
        self.requests[Self::op_index(op) * VERDICT_COUNT].fetch_add(1, Ordering::Relaxed);
    }

    /// A request that failed upstream.
    pub fn upstream_error(&self, op: Operation) {
        self.requests[Self::op_index(op) * VERDICT_COUNT + 1].fetch_add(1, Ordering::Relaxed);
    }

    /// A refused request.
    pub fn refused(&self, op: Operation, refusal: Refusal) {
        self.requests[Self::op_index(op) * VERDICT_COUNT + index(refusal)].fetch_add(1, Ordering::Relaxed);
    }

    /// Monitor mode: a request that would have been refused.
    pub fn would_refuse(&self, refusal: Refusal) {
        self.would_refuse[refusal.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The observer a [`crate::keys::Refresher`] of this route reports its fetches to.
    pub fn fetch_observer(self: &Arc<Self>) -> FetchObserver {
        let metrics = self.clone();
        Arc::new(move |source, outcome| metrics.discovery_fetch(source, outcome))
    }

    /// A `resolve_all` source gone past `keys.retention`: its fetch counters are no longer shown.
    pub fn forget_source(&self, source: &str) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).retain(|(u, _)| u != source);
    }

    /// One discovery fetch of `source` ended with `outcome`.
    pub fn discovery_fetch(&self, source: &str, outcome: &RefreshOutcome) {
        let o = outcome.index();
        let mut known = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        match known.iter().find(|(u, _)| u == source) {
            Some((_, counts)) => counts[o].fetch_add(1, Ordering::Relaxed),
            None => {
                let counts: [AtomicU64; FETCH_OUTCOMES.len()] = Default::default();
                counts[o].store(1, Ordering::Relaxed);
                known.push((source.to_string(), counts));
                0
            }
        };
    }

    /// The stats of the members `names`, in that order: a member already known keeps its own.
    /// Members not named are no longer shown.
    pub fn members(&self, names: &[String]) -> Vec<Arc<MemberStats>> {
        let mut known = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let stats: Vec<Arc<MemberStats>> = names
            .iter()
            .map(|n| known.iter().find(|m| &m.name == n).cloned().unwrap_or_else(|| Arc::new(MemberStats::new(n))))
            .collect();
        *known = stats.clone();
        stats
    }
}

impl Metrics {
    /// Metrics for these discovery sources (of the unlabelled route).
    pub fn new(sources: &[String]) -> Self {
        let metrics = Metrics {
            unrouted: Arc::new(RouteMetrics::new(None)),
            routes: Mutex::new(Vec::new()),
            verification: Histogram::new(),
            upstream: Histogram::new(),
            reloads: Default::default(),
            rotations_proved: AtomicU64::new(0),
            shared: Histogram::new(),
            shared_errors: Default::default(),
            shared_fallback: AtomicU64::new(0),
            shared_local_refusals: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connection_events: Default::default(),
        };
        metrics.unrouted.add_sources(sources);
        metrics
    }

    /// The unlabelled counters: requests refused before a route was chosen, and the one route of
    /// a file without `[[routes]]`.
    pub fn unrouted(&self) -> &Arc<RouteMetrics> {
        &self.unrouted
    }

    /// The counters of the routes `labels`, in that order (`None`: the unlabelled ones); a route
    /// already known keeps its own. Labelled routes not named are no longer shown.
    pub fn routes(&self, labels: &[Option<String>]) -> Vec<Arc<RouteMetrics>> {
        let mut known = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let found: Vec<Arc<RouteMetrics>> = labels
            .iter()
            .map(|label| match label {
                None => self.unrouted.clone(),
                Some(l) => known
                    .iter()
                    .find(|r| r.label.as_deref() == Some(l.as_str()))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(RouteMetrics::new(Some(l.clone())))),
            })
            .collect();
        *known = found.iter().filter(|r| r.label.is_some()).cloned().collect();
        if labels.iter().any(Option::is_some) {
            // The unlabelled route's sources and members belonged to a file without routes.
            self.unrouted.sources.lock().unwrap_or_else(|e| e.into_inner()).clear();
            self.unrouted.members.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        found
    }

    /// Every route's counters: the unlabelled ones first.
    fn all_routes(&self) -> Vec<Arc<RouteMetrics>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::once(self.unrouted.clone()).chain(routes.iter().cloned()).collect()
    }

    /// A configuration reload was applied (`true`) or refused.
    pub fn reload(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    }

    /// `rotation`: a request proved a held key, which is trusted from now on.
    pub fn rotation_proved(&self) {
        self.rotations_proved.fetch_add(1, Ordering::Relaxed);
    }

    /// Time spent verifying one proof (RSA included, re-fetch excluded).
    pub fn verification_time(&self, d: Duration) {
        self.verification.observe(d);
    }

    /// Time from sending upstream to the upstream's response header.
    pub fn upstream_time(&self, d: Duration) {
        self.upstream.observe(d);
    }

    /// The observer a [`crate::keys::Refresher`] of the unlabelled route reports its fetches to.
    pub fn fetch_observer(self: &Arc<Self>) -> FetchObserver {
        self.unrouted.fetch_observer()
    }

    /// `[shared]`: one Redis round trip took `d`.
    pub fn shared_state_time(&self, d: Duration) {
        self.shared.observe(d);
    }

    /// `[shared]`: a Redis call failed.
    pub fn shared_error(&self, kind: SharedError) {
        self.shared_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `[shared]`: whether `on_error` applies now instead of Redis.
    pub fn shared_fallback(&self, on: bool) {
        self.shared_fallback.store(u64::from(on), Ordering::Relaxed);
    }

    /// `[shared]`: a refusal from the local negative cache.
    pub fn shared_local_refusal(&self) {
        self.shared_local_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection was admitted (`true`) or has ended.
    pub fn connection_open(&self, opened: bool) {
        if opened {
            self.connections_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// wopi-guard closed a connection for `event`.
    pub fn connection(&self, event: ConnectionEvent) {
        self.connection_events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of everything, with the keys in force described from `keys`
    /// (the unlabelled route's).
    pub fn render(&self, keys: &KeySnapshot, now: SystemTime) -> String {
        self.render_routes(&[(None, keys)], now)
    }

    /// Prometheus text exposition of everything, with each route's keys in force described from
    /// its snapshot (`None`: the unlabelled route).
    pub fn render_routes(&self, keys: &[(Option<&str>, &KeySnapshot)], now: SystemTime) -> String {
        let routes = self.all_routes();
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP wopi_guard_requests_total Requests by WOPI operation and verdict.\n# TYPE wopi_guard_requests_total counter\n");
        for r in &routes {
            let route = r.route_label();
            for (o, op) in Operation::ALL.iter().enumerate() {
                for (v, verdict) in verdicts().enumerate() {
                    let n = r.requests[o * VERDICT_COUNT + v].load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "wopi_guard_requests_total{{{route}operation=\"{op}\",verdict=\"{verdict}\"}} {n}"
                        );
                    }
                }
            }
        }
        out.push_str("# HELP wopi_guard_monitor_would_refuse_total Monitor mode: requests forwarded that enforce mode would refuse.\n# TYPE wopi_guard_monitor_would_refuse_total counter\n");
        for r in &routes {
            let route = r.route_label();
            for (v, verdict) in Refusal::LABELS.iter().enumerate() {
                let n = r.would_refuse[v].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "wopi_guard_monitor_would_refuse_total{{{route}reason=\"{verdict}\"}} {n}");
                }
            }
        }
        self.verification.render(&mut out, "wopi_guard_verification_seconds", "Time to verify one proof.");
        self.upstream.render(
            &mut out,
            "wopi_guard_upstream_seconds",
            "Time from sending upstream to its response header.",
        );
        out.push_str("# HELP wopi_guard_discovery_fetches_total Discovery fetches by source and outcome.\n# TYPE wopi_guard_discovery_fetches_total counter\n");
        for r in &routes {
            let route = r.route_label();
            for (source, counts) in r.sources.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                for (outcome, count) in FETCH_OUTCOMES.iter().zip(counts) {
                    let n = count.load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "wopi_guard_discovery_fetches_total{{{route}source=\"{}\",outcome=\"{outcome}\"}} {n}",
                        escape(source)
                    );
                }
            }
        }
        out.push_str("# HELP wopi_guard_config_reloads_total Configuration reloads (SIGHUP) by outcome.\n# TYPE wopi_guard_config_reloads_total counter\n");
        for (outcome, count) in ["applied", "refused"].iter().zip(&self.reloads) {
            let _ = writeln!(
                out,
                "wopi_guard_config_reloads_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP wopi_guard_proof_key_rotations_proved_total keys.trust = \"rotation\": held keys trusted because a request was signed with them and with a trusted key.\n# TYPE wopi_guard_proof_key_rotations_proved_total counter\nwopi_guard_proof_key_rotations_proved_total {}",
            self.rotations_proved.load(Ordering::Relaxed)
        );
        self.shared.render(&mut out, "wopi_guard_shared_state_seconds", "[shared]: one Redis round trip.");
        out.push_str("# HELP wopi_guard_shared_state_errors_total [shared]: failed Redis calls by kind.\n# TYPE wopi_guard_shared_state_errors_total counter\n");
        for (kind, count) in SharedError::ALL.iter().zip(&self.shared_errors) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "wopi_guard_shared_state_errors_total{{kind=\"{}\"}} {n}", kind.label());
        }
        let _ = writeln!(
            out,
            "# HELP wopi_guard_shared_state_fallback [shared]: 1 while on_error applies instead of Redis.\n# TYPE wopi_guard_shared_state_fallback gauge\nwopi_guard_shared_state_fallback {}",
            self.shared_fallback.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wopi_guard_shared_state_local_refusals_total [shared]: refused by the local negative cache, no Redis call.\n# TYPE wopi_guard_shared_state_local_refusals_total counter\nwopi_guard_shared_state_local_refusals_total {}",
            self.shared_local_refusals.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wopi_guard_connections_open Client connections open now.\n# TYPE wopi_guard_connections_open gauge\nwopi_guard_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        out.push_str("# HELP wopi_guard_connections_closed_total Client connections wopi-guard closed itself, by the limit that closed them.\n# TYPE wopi_guard_connections_closed_total counter\n");
        for (event, count) in ConnectionEvent::ALL.iter().zip(&self.connection_events) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "wopi_guard_connections_closed_total{{reason=\"{}\"}} {n}", event.label());
        }
        let members: Vec<(String, Arc<MemberStats>)> = routes
            .iter()
            .flat_map(|r| {
                let route = r.route_label();
                let members = r.members.lock().unwrap_or_else(|e| e.into_inner()).clone();
                members.into_iter().map(move |m| (route.clone(), m))
            })
            .collect();
        out.push_str("# HELP wopi_guard_upstream_up Whether an upstream member is taken to be up (health checks, failed connections).\n# TYPE wopi_guard_upstream_up gauge\n");
        for (route, m) in &members {
            let _ = writeln!(
                out,
                "wopi_guard_upstream_up{{{route}upstream=\"{}\"}} {}",
                escape(&m.name),
                u8::from(m.is_up())
            );
        }
        out.push_str("# HELP wopi_guard_upstream_requests_total Requests sent to an upstream member (each attempt).\n# TYPE wopi_guard_upstream_requests_total counter\n");
        for (route, m) in &members {
            let n = m.requests.load(Ordering::Relaxed);
            let _ = writeln!(out, "wopi_guard_upstream_requests_total{{{route}upstream=\"{}\"}} {n}", escape(&m.name));
        }
        out.push_str("# HELP wopi_guard_upstream_errors_total Attempts on an upstream member that failed before its answer.\n# TYPE wopi_guard_upstream_errors_total counter\n");
        for (route, m) in &members {
            let n = m.errors.load(Ordering::Relaxed);
            let _ = writeln!(out, "wopi_guard_upstream_errors_total{{{route}upstream=\"{}\"}} {n}", escape(&m.name));
        }
        let labelled: Vec<(String, &KeySnapshot)> = keys
            .iter()
            .map(|(label, snap)| (label.map_or_else(String::new, |l| format!("route=\"{}\",", escape(l))), *snap))
            .collect();
        // Each family's HELP, TYPE and samples stand together (the exposition format's rule).
        out.push_str(
            "# HELP wopi_guard_proof_key Proof keys in force (1 per key).\n# TYPE wopi_guard_proof_key gauge\n",
        );
        for (route, keys) in &labelled {
            // A key served in several answers of a source shows once per family: at its most
            // recent role and last-seen time (answers come latest first).
            let mut shown: Vec<(&str, &str)> = Vec::new();
            for s in &keys.sources {
                let source = escape(&s.url);
                let roles = if s.retained { ("retained", "retained") } else { ("current", "old") };
                for (which, key) in std::iter::once((roles.0, &s.current)).chain(s.old.as_ref().map(|k| (roles.1, k))) {
                    if shown.contains(&(&*s.url, key.fingerprint())) {
                        continue;
                    }
                    shown.push((&s.url, key.fingerprint()));
                    let _ = writeln!(
                        out,
                        "wopi_guard_proof_key{{{route}source=\"{source}\",key=\"{which}\",fingerprint=\"{}\",bits=\"{}\"}} 1",
                        key.fingerprint(),
                        key.bits()
                    );
                }
            }
        }
        out.push_str("# HELP wopi_guard_proof_key_last_seen_seconds Seconds since the source last served the key (keys.retention keeps it this long).\n# TYPE wopi_guard_proof_key_last_seen_seconds gauge\n");
        for (route, keys) in &labelled {
            let mut shown: Vec<(&str, &str)> = Vec::new();
            for s in &keys.sources {
                let age = now.duration_since(s.fetched_at).unwrap_or_default().as_secs();
                for key in std::iter::once(&s.current).chain(s.old.as_ref()) {
                    if shown.contains(&(&*s.url, key.fingerprint())) {
                        continue;
                    }
                    shown.push((&s.url, key.fingerprint()));
                    let _ = writeln!(
                        out,
                        "wopi_guard_proof_key_last_seen_seconds{{{route}source=\"{}\",fingerprint=\"{}\"}} {age}",
                        escape(&s.url),
                        key.fingerprint()
                    );
                }
            }
        }
        out.push_str("# HELP wopi_guard_proof_key_held Keys a source serves that are never used to verify (keys.trust, keys.pinned, published private keys).\n# TYPE wopi_guard_proof_key_held gauge\n");
        for (route, keys) in &labelled {
            for h in &keys.held {
                let _ = writeln!(
                    out,
                    "wopi_guard_proof_key_held{{{route}source=\"{}\",fingerprint=\"{}\"}} 1",
                    escape(&h.source),
                    h.fingerprint
                );
            }
        }
        out.push_str("# HELP wopi_guard_proof_key_changes_total Changes of a source's current key to one it had not served within keys.retention.\n# TYPE wopi_guard_proof_key_changes_total counter\n");
        for (route, keys) in &labelled {
            for (source, _) in &keys.answered {
                let n = keys.changes.iter().find(|(s, _)| s == source).map_or(0, |(_, n)| *n);
                let _ = writeln!(out, "wopi_guard_proof_key_changes_total{{{route}source=\"{}\"}} {n}", escape(source));
            }
        }
        out.push_str("# HELP wopi_guard_proof_key_age_seconds Seconds since the source last answered.\n# TYPE wopi_guard_proof_key_age_seconds gauge\n");
        for (route, keys) in &labelled {
            for (source, at) in &keys.answered {
                let age = now.duration_since(*at).unwrap_or_default().as_secs();
                let _ = writeln!(out, "wopi_guard_proof_key_age_seconds{{{route}source=\"{}\"}} {age}", escape(source));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_counter() {
        use crate::refusal::LimitScope;
        let m = Metrics::new(&[]);
        m.unrouted().refused(Operation::Lock, Refusal::OverrideHeader);
        m.unrouted().refused(Operation::Lock, Refusal::RateLimited { scope: LimitScope::Ip, retry_after: 1 });
        let text = m.render(&KeySnapshot::default(), SystemTime::now());
        assert!(text.contains(r#"{operation="Lock",verdict="override_header"} 1"#), "{text}");
        assert!(text.contains(r#"{operation="Lock",verdict="rate_limited"} 1"#), "{text}");
        assert_eq!(verdicts().count(), VERDICT_COUNT);
    }

    #[test]
    fn each_shared_error_kind_has_its_own_counter() {
        let m = Metrics::new(&[]);
        for (n, kind) in SharedError::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.shared_error(kind);
            }
        }
        let text = m.render(&KeySnapshot::default(), SystemTime::now());
        for (n, kind) in SharedError::ALL.into_iter().enumerate() {
            let line = format!("wopi_guard_shared_state_errors_total{{kind=\"{}\"}} {}", kind.label(), n + 1);
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }

    #[test]
    fn each_connection_event_has_its_own_counter() {
        let m = Metrics::new(&[]);
        for (n, event) in ConnectionEvent::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.connection(event);
            }
        }
        m.connection_open(true);
        m.connection_open(true);
        m.connection_open(false);
        let text = m.render(&KeySnapshot::default(), SystemTime::now());
        for (n, event) in ConnectionEvent::ALL.into_iter().enumerate() {
            let line = format!("wopi_guard_connections_closed_total{{reason=\"{}\"}} {}", event.label(), n + 1);
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(text.contains("wopi_guard_connections_open 1"), "{text}");
    }

    #[test]
    fn renders_counts_and_histograms() {
        let m = Metrics::new(&["http://office/hosting/discovery".into()]);
        m.unrouted().forwarded(Operation::CheckFileInfo);
        m.unrouted().forwarded(Operation::CheckFileInfo);
        m.unrouted().refused(Operation::PutFile, Refusal::ProofInvalid);
        m.unrouted().upstream_error(Operation::GetFile);
        m.unrouted().would_refuse(Refusal::ProofExpired);
        m.verification_time(Duration::from_micros(20));
        m.unrouted().discovery_fetch("http://office/hosting/discovery", &RefreshOutcome::Updated);
        m.unrouted().discovery_fetch("http://office/hosting/discovery", &RefreshOutcome::Failed("refused".into()));
        let text = m.render(&KeySnapshot::default(), SystemTime::now());
        assert!(text.contains(r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="forwarded"} 2"#));
        assert!(text.contains(r#"wopi_guard_requests_total{operation="PutFile",verdict="proof_invalid"} 1"#));
        assert!(text.contains(r#"wopi_guard_requests_total{operation="GetFile",verdict="upstream_error"} 1"#));
        assert!(text.contains(r#"wopi_guard_monitor_would_refuse_total{reason="proof_expired"} 1"#));
        assert!(text.contains(r#"wopi_guard_verification_seconds_bucket{le="0.00005"} 1"#));
        assert!(text.contains("wopi_guard_verification_seconds_count 1"));
        assert!(text.contains(
            r#"wopi_guard_discovery_fetches_total{source="http://office/hosting/discovery",outcome="updated"} 1"#
        ));
        assert!(text.contains(
            r#"wopi_guard_discovery_fetches_total{source="http://office/hosting/discovery",outcome="failed"} 1"#
        ));
    }
}
