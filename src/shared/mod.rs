//! State shared by N instances on Redis (`[shared]`): the rate limits and the replay cache. All
//! the limits and the replay check of one request cost one round trip (one script, [`script`]);
//! on a Cluster, one call per key group (hash-tagged), sent at once. A key Redis said is over
//! its limit is refused locally until its Retry-After ([`negative`]). When Redis fails or is
//! slow, a circuit breaker ([`breaker`]) stops calling it for a while and `on_error` decides.

mod breaker;
mod negative;
mod redis;
mod script;
mod trust;

pub use self::redis::{CallError, Connection, ServerInfo};
pub use breaker::{Breaker, Permit};
pub use negative::NegativeCache;
pub use script::{Answer, LimitKey, LUA};

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::operation::Operation;
use crate::policy::{ip_key, Budget, LimitConfig, RateLimitConfig, RateLimits, ReplayCache, Seen};
use crate::refusal::{LimitScope, Refusal};

/// What a request gets when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// This instance's own state: each budget divided by `instances`, a local replay cache.
    Local,
    /// 503 with Retry-After.
    Deny,
    /// No rate limit and no replay check until Redis is back.
    Allow,
}

impl OnError {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            OnError::Local => "local",
            OnError::Deny => "deny",
            OnError::Allow => "allow",
        }
    }
}

/// The client URL under `sentinels` when `redis` is not given (its host is never used).
const SENTINEL_ONLY: &str = "redis://sentinel-master";

/// A `redis://` or `rediss://` URL; shown only as `scheme://***@host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
    shown: String,
    tls: bool,
}

impl RedisUrl {
    /// Checks the scheme and the host; the error says what is wrong without the password.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let parsed =
            url::Url::parse(text).map_err(|e| format!("not a URL ({e}); write redis://[:password@]host:port[/db]"))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(format!("scheme `{other}` is not redis:// or rediss://")),
        };
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
        let port = parsed.port().unwrap_or(6379);
        let credentials = !parsed.username().is_empty() || parsed.password().is_some();
        let shown = format!("{}://{}{host}:{port}", parsed.scheme(), if credentials { "***@" } else { "" });
        Ok(RedisUrl { url: text.to_string(), shown, tls })
    }

    /// Through Redis Sentinel: `redis` (when given) supplies only the password, database and TLS;
    /// shown as `sentinel://[***@]master@node,node`.
    pub fn for_sentinel(redis: Option<&RedisUrl>, sentinel: &SentinelConfig) -> RedisUrl {
        let credentials = redis.is_some_and(|r| r.shown.contains("***@"));
        let nodes: Vec<String> = sentinel.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let shown =
            format!("sentinel://{}{}@{}", if credentials { "***@" } else { "" }, sentinel.master, nodes.join(","));
        RedisUrl {
            url: redis.map_or_else(|| SENTINEL_ONLY.to_string(), |r| r.url.clone()),
            shown,
            tls: redis.is_some_and(|r| r.tls),
        }
    }

    /// Under `sentinels`: the `host:port` of a `redis` URL that was given (and is not used).
    pub fn unused_host(&self) -> Option<String> {
        if !self.shown.starts_with("sentinel://") || self.url == SENTINEL_ONLY {
            return None;
        }
        let parsed = url::Url::parse(&self.url).ok()?;
        Some(format!("{}:{}", parsed.host_str()?, parsed.port().unwrap_or(6379)))
    }

    /// The URL as configured (with its password): only for the Redis client.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `rediss://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// For logs and `check`.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Replaces anything that looks like `//user:password@` in an error text.
pub(crate) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"').unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(a) => {
                out.push_str("***");
                rest = &tail[a..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `[shared] sentinels` and `sentinel_master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, `(host, port)`.
    pub nodes: Vec<(String, u16)>,
    /// The master's name they monitor.
    pub master: String,
}

/// `[shared]`, validated.
#[derive(Clone, PartialEq)]
pub struct SharedConfig {
    /// The Redis URL (with `sentinel`: its password, database and TLS only).
    pub redis: RedisUrl,
    /// `redis` is one seed node of a Redis Cluster.
    pub cluster: bool,
    /// Redis Sentinel finds the master.
    pub sentinel: Option<SentinelConfig>,
    /// Longest wait per round trip.
    pub timeout: Duration,
    /// When Redis fails or times out.
    pub on_error: OnError,
    /// Expected number of instances, for `on_error = "local"`.
    pub instances: u32,
    /// Prefix of every key (with `[[routes]]`, a named route's own: `key_prefix:host`).
    pub key_prefix: String,
    /// Prefix of the replay keys: `key_prefix` as configured, for every route. The signed bytes
    /// they hash hold the route's `public_url`, so routes never share one, and a reload that
    /// moves a host between routes keeps them.
    pub replay_prefix: String,
    /// CA certificates for `rediss://` (else the system roots).
    pub ca_file: Option<PathBuf>,
    /// The keyed hash's key, the same on every instance (`hash_key` or `hash_key_file`).
    pub hash_key: Vec<u8>,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("redis", &self.redis)
            .field("cluster", &self.cluster)
            .field("sentinel", &self.sentinel)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("instances", &self.instances)
            .field("key_prefix", &self.key_prefix)
            .field("replay_prefix", &self.replay_prefix)
            .field("ca_file", &self.ca_file)
            .field("hash_key", &"***")
            .finish()
    }
}

/// The keyed hash of key material (tokens, file ids, addresses, signed bytes): the same on every
/// instance, so they agree on keys, and one-way, so no key holds a raw token.
struct KeyHash(aws_lc_rs::hmac::Key);

impl KeyHash {
    fn new(secret: &[u8]) -> Self {
        KeyHash(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret))
    }

    /// 32 hex digits of HMAC-SHA256(`kind` ‖ 0 ‖ `value`).
    fn hex(&self, kind: &str, value: &[u8]) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.0);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        let tag = ctx.sign();
        let mut out = String::with_capacity(32);
        for b in &tag.as_ref()[..16] {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// What one request spends: who, and which operation.
#[derive(Debug, Clone, Copy)]
pub struct Subjects<'a> {
    /// The client address.
    pub client: IpAddr,
    /// The access token, raw (hashed before it is used in a key).
    pub token: Option<&'a [u8]>,
    /// The WOPI file id, raw.
    pub file: Option<&'a [u8]>,
    /// The operation (for per-operation budgets).
    pub operation: Operation,
    /// The request's proof failed: it spends the address's `rate_limit.failed_proofs`.
    pub failed_proof: bool,
}

/// The shared rate limits and replay cache of one `[shared]` + `[rate_limit]` configuration.
pub struct SharedState {
    config: SharedConfig,
    limits: RateLimitConfig,
    /// `proof.replay_cache`'s (local capacity, window), as made.
    replay: Option<(usize, Duration)>,
    replay_window: Option<Duration>,
    connection: tokio::sync::OnceCell<Connection>,
    breaker: Breaker,
    negative: NegativeCache,
    hash: KeyHash,
    fallback_limits: RateLimits,
    /// The local replay cache `on_error = "local"` checks. Proofs Redis admits go in it too, so
    /// one admitted through Redis cannot be replayed here during an outage.
    fallback_replay: Option<ReplayCache>,
    /// Replay keys of proofs admitted while `on_error` applied, with when they expire: written
    /// to Redis (`SET NX`) before it judges anything again, so none can be replayed after.
    outage_proofs: std::sync::Mutex<std::collections::VecDeque<(String, Instant)>>,
    outage_pending: std::sync::atomic::AtomicBool,
    flushing: tokio::sync::Mutex<()>,
    /// Addresses whose failed proofs this instance spent in Redis: a proof from one that
    /// verifies gives the budget back (the others' are untouched, no Redis call).
    failed_recently: dashmap::DashMap<u128, Instant>,
    metrics: Arc<Metrics>,
}

impl SharedState {
    /// The state for `config`, not connected yet ([`SharedState::connect`] connects; otherwise
    /// the first request does). `replay` is `proof.replay_cache`'s (local capacity, window).
    pub fn new(
        config: SharedConfig,
        limits: RateLimitConfig,
        replay: Option<(usize, Duration)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let fallback_limits = RateLimits::new(&divided(&limits, config.instances));
        SharedState {
            hash: KeyHash::new(&config.hash_key),
            fallback_replay: replay.map(|(capacity, window)| ReplayCache::new(capacity, window)),
            replay_window: replay.map(|(_, window)| window),
            replay,
            connection: tokio::sync::OnceCell::new(),
            breaker: Breaker::default(),
            negative: NegativeCache::default(),
            fallback_limits,
            outage_proofs: Default::default(),
            outage_pending: Default::default(),
            flushing: Default::default(),
            failed_recently: Default::default(),
            limits,
            config,
            metrics,
        }
    }

    /// The configuration this state was made for.
    pub fn config(&self) -> &SharedConfig {
        &self.config
    }

    /// The `[rate_limit]` this state applies.
    pub fn limits(&self) -> &RateLimitConfig {
        &self.limits
    }

    /// The replay cache's (local capacity, window) this state was made for.
    pub fn replay(&self) -> Option<(usize, Duration)> {
        self.replay
    }

    /// Connects now (a reload does, before it swaps): the error says why it could not.
    pub async fn connect(&self) -> Result<ServerInfo, CallError> {
        let mut connection = self.connection().await?;
        connection.info(self.config.timeout.max(Duration::from_secs(1))).await
    }

    async fn connection(&self) -> Result<Connection, CallError> {
        self.connection
            .get_or_try_init(|| async {
                let opened = Connection::open(&self.config).await;
                match &opened {
                    Ok(_) => tracing::info!(redis = %self.config.redis, cluster = self.config.cluster, on_error = self.config.on_error.name(), "shared state: connected to Redis"),
                    Err(error) => tracing::warn!(redis = %self.config.redis, %error, on_error = self.config.on_error.name(), "shared state: cannot connect to Redis (tried again at the next call)"),
                }
                opened
            })
            .await
            .cloned()
    }

    /// Before any proof work: the address's limit keys, or a refusal when Redis already said one
    /// is over its limit (no Redis call). [`SharedState::admit`] spends them.
    pub fn precheck(&self, client: IpAddr, operation: Operation) -> Result<Vec<LimitKey>, Refusal> {
        let mut keys = Vec::new();
        let ip = ip_key(client).to_be_bytes();
        self.push_keys(&mut keys, (LimitScope::Ip, "ip"), &ip, self.limits.per_ip.as_ref(), operation);
        self.refused_locally(&keys, Instant::now())?;
        Ok(keys)
    }

    /// Before any RSA work on a signed request: a refusal when Redis said the address's
    /// `rate_limit.failed_proofs` is spent (no Redis call).
    pub fn failures_refused(&self, client: IpAddr) -> Result<(), Refusal> {
        if self.limits.failed_proofs.is_none() {
            return Ok(());
        }
        // While on_error = "local" applies, this instance's own count says so.
        self.fallback_limits.failures_blocked(client).map_err(from_local)?;
        match self.negative.refused_for(&self.failures_key(client), Instant::now()) {
            Some(wait) => {
                self.metrics.shared_local_refusal();
                Err(limited(LimitScope::FailedProofs, wait))
            }
            None => Ok(()),
        }
    }

    /// A proof from `client` verified: when this instance spent its `failed_proofs` budget,
    /// it is whole again, here and in Redis (one `DEL`, only then).
    pub async fn proof_verified(&self, client: IpAddr) {
        if self.failed_recently.remove(&ip_key(client)).is_none() {
            return;
        }
        let key = self.failures_key(client);
        self.negative.forget(&key);
        self.fallback_limits.proof_verified(client);
        if let Ok(mut connection) = self.connection().await {
            let mut del = ::redis::cmd("DEL");
            del.arg(&key);
            if let Err(error) = connection.call::<i64>(&del, self.config.timeout).await {
                tracing::debug!(%error, "could not give a verified address its failed_proofs budget back");
            }
        }
    }

    /// The Redis key of an address's `failed_proofs` budget (in the address's hash-tag group).
    fn failures_key(&self, client: IpAddr) -> String {
        let ip = ip_key(client).to_be_bytes();
        format!("{}:rl:{{ip:{}}}:failed", self.config.key_prefix, self.hash.hex("ip", &ip))
    }

    /// Spends `limits` (the address's, from [`SharedState::precheck`]) and the token's and
    /// file's budgets and, with `replay` (the signed bytes of a verified proof), records its
    /// first use: one round trip. A refusal when a budget is spent, the proof was already used,
    /// or Redis failed under `on_error = "deny"`.
    pub async fn admit(
        &self,
        limits: Vec<LimitKey>,
        subjects: &Subjects<'_>,
        replay: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        self.admit_checked(limits, subjects, replay).await.map(|_| ())
    }

    /// [`SharedState::admit`], saying whether Redis itself judged the request (`true`; else
    /// `on_error` did, or there was nothing to ask).
    pub async fn admit_checked(
        &self,
        mut limits: Vec<LimitKey>,
        subjects: &Subjects<'_>,
        replay: Option<&[u8]>,
    ) -> Result<bool, Refusal> {
        let checked = limits.len();
        let op = subjects.operation;
        if let Some(token) = subjects.token {
            self.push_keys(&mut limits, (LimitScope::Token, "tok"), token, self.limits.per_token.as_ref(), op);
        }
        if let Some(file) = subjects.file {
            self.push_keys(&mut limits, (LimitScope::File, "file"), file, self.limits.per_file.as_ref(), op);
        }
        if let (true, Some(budget)) = (subjects.failed_proof, self.limits.failed_proofs) {
            limits.push(LimitKey { key: self.failures_key(subjects.client), scope: LimitScope::FailedProofs, budget });
            let now = Instant::now();
            if self.failed_recently.len() >= self.limits.max_tracked_keys {
                // Kept as long as a spent budget takes to refill; older entries have nothing to give back.
                let refill = Duration::from_secs_f64(f64::from(budget.burst) / budget.per_second);
                self.failed_recently.retain(|_, at| now.saturating_duration_since(*at) < refill);
            }
            if self.failed_recently.len() < self.limits.max_tracked_keys {
                self.failed_recently.insert(ip_key(subjects.client), now);
            }
        }
        let now = Instant::now();
        self.refused_locally(&limits[checked..], now)?;
        let replay_key = replay.filter(|_| self.replay_window.is_some()).map(|signed| self.replay_key(signed));
        if limits.is_empty() && replay_key.is_none() {
            return Ok(false);
        }
        match self.breaker.permit(now) {
            Permit::Call | Permit::Probe => match self.call(&limits, replay_key.as_deref()).await {
                Ok(answer) => {
                    self.recovered(Instant::now());
                    if let (Answer::Admitted, Some(cache), Some(signed)) =
                        (answer, &self.fallback_replay, replay.filter(|_| replay_key.is_some()))
                    {
                        // Kept for one window, so a Redis outage does not reopen it here; and a
                        // proof this instance already admitted (Redis lost it, or it was admitted
                        // during an outage) is refused whatever Redis says.
                        if cache.check_and_remember(signed, now) == Seen::Replayed {
                            return Err(Refusal::ProofReplayed);
                        }
                    }
                    return self.answered(answer, &limits, now).map(|()| true);
                }
                Err(error) => {
                    self.metrics.shared_error(error.kind());
                    if self.breaker.failure(Instant::now()) {
                        tracing::warn!(
                            redis = %self.config.redis,
                            %error,
                            on_error = self.config.on_error.name(),
                            "shared state: Redis failing; applying on_error until it answers again"
                        );
                    }
                }
            },
            Permit::Open => {}
        }
        self.metrics.shared_fallback(true);
        self.fallback(subjects, replay).map(|()| false)
    }

    fn answered(&self, answer: Answer, limits: &[LimitKey], now: Instant) -> Result<(), Refusal> {
        match answer {
            Answer::Admitted => Ok(()),
            Answer::Replayed => Err(Refusal::ProofReplayed),
            Answer::Limited(index, wait) => {
                let limit = limits.get(index).ok_or(Refusal::SharedStateUnavailable)?;
                self.negative.remember(&limit.key, now, wait);
                Err(limited(limit.scope, wait))
            }
        }
    }

    async fn call(&self, limits: &[LimitKey], replay: Option<&str>) -> Result<Answer, CallError> {
        let started = Instant::now();
        let mut connection = self.connection().await?;
        self.write_outage_proofs(&connection).await?;
        let window = self.replay_window.unwrap_or_default();
        let answer = if self.config.cluster {
            // Keys in different slots cannot share a script: one call per hash-tagged group
            // (address, token, file, replay), all sent at once.
            let mut groups: Vec<(Vec<&LimitKey>, Vec<usize>)> = Vec::new();
            for (i, limit) in limits.iter().enumerate() {
                match groups.iter_mut().find(|(g, _)| g[0].scope == limit.scope) {
                    Some((g, idx)) => {
                        g.push(limit);
                        idx.push(i);
                    }
                    None => groups.push((vec![limit], vec![i])),
                }
            }
            let timeout = self.config.timeout;
            let run = |(keys, args): (Vec<String>, Vec<u64>)| {
                let mut c = connection.clone();
                async move { c.run_script(&keys, &args, timeout).await }
            };
            // The replay key first, alone: a replay spends no budget. A request a limit then
            // refuses gives its replay key back, so its retry is not taken for a replay.
            if let Some(key) = replay {
                let reply = run(script::invocation(&[], Some((key, window)))).await?;
                if Answer::from_reply(&reply).ok_or(CallError::Reply)? == Answer::Replayed {
                    self.metrics.shared_state_time(started.elapsed());
                    return Ok(Answer::Replayed);
                }
            }
            let calls: Vec<_> = groups.iter().map(|(group, _)| run(script::invocation(group, None))).collect();
            let replies = futures_util::future::join_all(calls).await;
            let mut answer = Ok(Answer::Admitted);
            for (n, reply) in replies.into_iter().enumerate() {
                let judged = reply.and_then(|r| Answer::from_reply(&r).ok_or(CallError::Reply));
                match (judged, &answer) {
                    (Err(e), _) => answer = Err(e),
                    (Ok(_), Err(_)) | (Ok(Answer::Admitted | Answer::Replayed), _) => {}
                    (Ok(Answer::Limited(i, wait)), Ok(so_far)) => {
                        let index = groups.get(n).and_then(|(_, idx)| idx.get(i).copied()).ok_or(CallError::Reply)?;
                        match so_far {
                            Answer::Limited(_, longer) if *longer >= wait => {}
                            _ => answer = Ok(Answer::Limited(index, wait)),
                        }
                    }
                }
            }
            // Refused by a limit, or not judged (the call failed): the request was not admitted.
            if let (Some(key), Ok(Answer::Limited(..)) | Err(_)) = (replay, &answer) {
                let mut del = ::redis::cmd("DEL");
                del.arg(key);
                if let Err(error) = connection.call::<i64>(&del, timeout).await {
                    tracing::debug!(%error, "could not give a refused request's replay key back");
                }
            }
            answer?
        } else {
            let refs: Vec<&LimitKey> = limits.iter().collect();
            let (keys, args) = script::invocation(&refs, replay.map(|k| (k, window)));
            let reply = connection.run_script(&keys, &args, self.config.timeout).await?;
            Answer::from_reply(&reply).ok_or(CallError::Reply)?
        };
        self.metrics.shared_state_time(started.elapsed());
        Ok(answer)
    }

    fn fallback(&self, subjects: &Subjects<'_>, replay: Option<&[u8]>) -> Result<(), Refusal> {
        let replay = replay.filter(|_| self.replay_window.is_some());
        match self.config.on_error {
            OnError::Allow => {}
            OnError::Deny => return Err(Refusal::SharedStateUnavailable),
            OnError::Local => {
                if subjects.failed_proof {
                    self.fallback_limits.failed_proof(subjects.client).map_err(from_local)?;
                }
                self.fallback_limits.check_ip(subjects.client, subjects.operation).map_err(from_local)?;
                self.fallback_limits
                    .check_admitted(subjects.token, subjects.file, subjects.operation)
                    .map_err(from_local)?;
                if let (Some(cache), Some(signed)) = (&self.fallback_replay, replay) {
                    match cache.check_and_remember(signed, Instant::now()) {
                        Seen::Fresh => {}
                        Seen::Replayed => return Err(Refusal::ProofReplayed),
                        Seen::Full => return Err(Refusal::ReplayCacheFull),
                    }
                }
            }
        }
        if let Some(signed) = replay {
            self.remember_for_redis(self.replay_key(signed), Instant::now());
        }
        Ok(())
    }

    /// A proof admitted while `on_error` applied: Redis gets its replay key when it is back.
    /// As many as the local replay cache holds (older ones are the first to expire anyway).
    fn remember_for_redis(&self, key: String, now: Instant) {
        let (Some(window), Some((capacity, _))) = (self.replay_window, self.replay) else { return };
        let mut proofs = self.outage_proofs.lock().unwrap_or_else(|e| e.into_inner());
        while proofs.front().is_some_and(|(_, expires)| *expires <= now) {
            proofs.pop_front();
        }
        if proofs.len() >= capacity {
            proofs.pop_front();
        }
        proofs.push_back((key, now + window));
        self.outage_pending.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Before Redis judges a request after an outage: the replay keys of the proofs admitted
    /// meanwhile, written with `SET NX` for what is left of their window. One caller writes;
    /// the others wait for it. On failure they are kept for the next call.
    async fn write_outage_proofs(&self, connection: &Connection) -> Result<(), CallError> {
        use std::sync::atomic::Ordering;
        if !self.outage_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        // Every caller waits until the proofs are in Redis: none is judged by Redis before.
        let _one = self.flushing.lock().await;
        if !self.outage_pending.load(Ordering::Acquire) {
            return Ok(()); // written while this one waited
        }
        let now = Instant::now();
        let proofs: Vec<(String, Instant)> = {
            let mut held = self.outage_proofs.lock().unwrap_or_else(|e| e.into_inner());
            held.drain(..).filter(|(_, expires)| *expires > now).collect()
        };
        let timeout = self.config.timeout.max(Duration::from_secs(1));
        let writes = proofs.iter().map(|(key, expires)| {
            let mut c = connection.clone();
            let ms = expires.saturating_duration_since(now).as_millis().max(1) as u64;
            async move {
                let mut set = ::redis::cmd("SET");
                set.arg(key).arg("1").arg("NX").arg("PX").arg(ms);
                c.call::<::redis::Value>(&set, timeout).await
            }
        });
        let results = futures_util::future::join_all(writes).await;
        let mut held = self.outage_proofs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = results.into_iter().find_map(Result::err) {
            for proof in proofs.into_iter().rev() {
                held.push_front(proof);
            }
            return Err(error);
        }
        if held.is_empty() {
            // Under the same lock a new outage proof takes: none is left behind.
            self.outage_pending.store(false, Ordering::Release);
        }
        drop(held);
        if proofs.is_empty() {
            return Ok(());
        }
        tracing::info!(redis = %self.config.redis, proofs = proofs.len(), "shared state: the proofs admitted while on_error applied are in Redis's replay cache");
        Ok(())
    }

    /// A refusal when the negative cache holds one of `keys`.
    fn refused_locally(&self, keys: &[LimitKey], now: Instant) -> Result<(), Refusal> {
        for limit in keys {
            if let Some(wait) = self.negative.refused_for(&limit.key, now) {
                self.metrics.shared_local_refusal();
                return Err(limited(limit.scope, wait));
            }
        }
        Ok(())
    }

    /// The limit keys of one subject (an address, its /64 for IPv6; a token; a file): the
    /// operation's budget and the general one, as `config` sets them.
    fn push_keys(
        &self,
        out: &mut Vec<LimitKey>,
        (scope, kind): (LimitScope, &str),
        value: &[u8],
        config: Option<&LimitConfig>,
        operation: Operation,
    ) {
        let Some(config) = config else { return };
        let tag = format!("{}:rl:{{{kind}:{}}}", self.config.key_prefix, self.hash.hex(kind, value));
        if let Some((_, budget)) = config.operations.iter().find(|(op, _)| *op == operation) {
            out.push(LimitKey { key: format!("{tag}:{}", operation.name()), scope, budget: *budget });
        }
        if let Some(budget) = config.general {
            out.push(LimitKey { key: tag, scope, budget });
        }
    }

    fn replay_key(&self, signed: &[u8]) -> String {
        format!("{}:rp:{}", self.config.replay_prefix, self.hash.hex("rp", signed))
    }

    /// Redis answered at `now`: the breaker closes, and if it was open a line says how long
    /// `on_error` applied.
    fn recovered(&self, now: Instant) {
        if let Some(outage) = self.breaker.success(now) {
            tracing::warn!(redis = %self.config.redis, outage_s = outage.as_secs_f64(), on_error = self.config.on_error.name(), "shared state: Redis answers again; on_error no longer applies");
        }
        self.metrics.shared_fallback(false);
    }

    /// `/ready` under `on_error = "deny"`: whether Redis answers a `PING` now (within `timeout`),
    /// which also closes or opens the breaker as a request's call would. `Ok` without a call for
    /// another `on_error`, which never refuses for Redis.
    pub async fn ready(&self) -> Result<(), String> {
        if self.config.on_error != OnError::Deny {
            return Ok(());
        }
        let now = Instant::now();
        if self.breaker.permit(now) == Permit::Open {
            return Err("Redis failed and its circuit breaker is open".into());
        }
        let ping = async {
            let mut connection = self.connection().await?;
            connection.call::<String>(&::redis::cmd("PING"), self.config.timeout).await
        };
        match ping.await {
            Ok(_) => {
                self.recovered(Instant::now());
                Ok(())
            }
            Err(error) => {
                self.metrics.shared_error(error.kind());
                if self.breaker.failure(Instant::now()) {
                    tracing::warn!(redis = %self.config.redis, %error, on_error = self.config.on_error.name(), "shared state: Redis failing; applying on_error until it answers again");
                }
                Err(format!("Redis does not answer ({error})"))
            }
        }
    }

    /// True while `on_error` applies instead of Redis.
    pub fn in_fallback(&self) -> bool {
        self.breaker.is_open()
    }
}

fn limited(scope: LimitScope, wait: Duration) -> Refusal {
    let retry_after = wait.as_secs_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
    from_local(crate::policy::Limited { scope, retry_after })
}

fn from_local(l: crate::policy::Limited) -> Refusal {
    match l.scope {
        LimitScope::FailedProofs => Refusal::ProofFailures { retry_after: l.retry_after },
        scope => Refusal::RateLimited { scope, retry_after: l.retry_after },
    }
}

/// `limits` with every budget divided among `instances` (rate and burst; at least 1 at once).
pub fn divided(limits: &RateLimitConfig, instances: u32) -> RateLimitConfig {
    let n = instances.max(1);
    let budget = |b: Budget| Budget { per_second: b.per_second / f64::from(n), burst: b.burst.div_ceil(n).max(1) };
    let set = |c: &LimitConfig| LimitConfig {
        general: c.general.map(budget),
        operations: c.operations.iter().map(|(op, b)| (*op, budget(*b))).collect(),
    };
    RateLimitConfig {
        max_tracked_keys: limits.max_tracked_keys,
        per_ip: limits.per_ip.as_ref().map(set),
        per_token: limits.per_token.as_ref().map(set),
        per_file: limits.per_file.as_ref().map(set),
        failed_proofs: limits.failed_proofs.map(budget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_shown_without_its_password() {
        let url = RedisUrl::parse("redis://:s3cret@10.0.0.9:6379/0").unwrap();
        assert_eq!(url.shown(), "redis://***@10.0.0.9:6379");
        assert_eq!(format!("{url} {url:?}"), "redis://***@10.0.0.9:6379 redis://***@10.0.0.9:6379");
        assert_eq!(RedisUrl::parse("rediss://cache.internal").unwrap().shown(), "rediss://cache.internal:6379");
        assert!(RedisUrl::parse("rediss://cache.internal").unwrap().is_tls());
        let e = RedisUrl::parse("http://:s3cret@h").unwrap_err();
        assert!(e.contains("redis://") && !e.contains("s3cret"), "{e}");
        assert_eq!(
            redact_text("failed to connect to redis://user:s3cret@h:1/0 (refused)"),
            "failed to connect to redis://***@h:1/0 (refused)"
        );
        assert_eq!(redact_text("no url here"), "no url here");
    }

    #[test]
    fn budgets_are_divided_among_instances() {
        let limits = RateLimitConfig {
            max_tracked_keys: 10,
            per_ip: Some(LimitConfig {
                general: Some(Budget { per_second: 9.0, burst: 10 }),
                operations: vec![(Operation::PutFile, Budget { per_second: 1.0, burst: 1 })],
            }),
            per_token: None,
            per_file: None,
            failed_proofs: None,
        };
        let d = divided(&limits, 3);
        let ip = d.per_ip.unwrap();
        assert_eq!(ip.general, Some(Budget { per_second: 3.0, burst: 4 }));
        assert_eq!(ip.operations, vec![(Operation::PutFile, Budget { per_second: 1.0 / 3.0, burst: 1 })]);
    }

    #[test]
    fn keys_are_hashed_alike_on_every_instance_and_hold_no_token() {
        let a = KeyHash::new(b"shared secret");
        let b = KeyHash::new(b"shared secret");
        assert_eq!(a.hex("tok", b"SeCrEt"), b.hex("tok", b"SeCrEt"));
        assert_ne!(a.hex("tok", b"SeCrEt"), KeyHash::new(b"other").hex("tok", b"SeCrEt"));
        assert_ne!(a.hex("tok", b"x"), a.hex("file", b"x"), "each kind its own space");
        assert_eq!(a.hex("tok", b"SeCrEt").len(), 32);
    }
}
