//! The Redis connection: redis-rs's connection manager (standalone; it reconnects by itself
//! after a restart), its cluster client (a seed node, the others discovered), or its Sentinel
//! client (the sentinels name the master; after any failed call the master is asked for again,
//! so a failover is followed by itself). One script call per round trip: `EVALSHA`, re-sent as
//! `EVAL` when Redis answers `NOSCRIPT` (after a restart, a failover or a `SCRIPT FLUSH`).

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, TlsMode};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError};
use std::sync::Arc;
use std::time::Duration;

use super::script::LUA;
use super::SharedConfig;
use crate::metrics::SharedError;

/// What went wrong with one call, for `wopi_guard_shared_state_errors_total{kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer within `[shared] timeout`.
    Timeout,
    /// Connecting or the connection failed.
    Connection(String),
    /// Redis answered with an error (script error, wrong type, cluster moved...).
    Server(String),
    /// The reply was not what the script returns.
    Reply,
}

impl CallError {
    /// Its kind, for the metric.
    pub fn kind(&self) -> SharedError {
        match self {
            CallError::Timeout => SharedError::Timeout,
            CallError::Connection(_) => SharedError::Connection,
            CallError::Server(_) => SharedError::Server,
            CallError::Reply => SharedError::Reply,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer within [shared] timeout"),
            CallError::Connection(e) => write!(f, "connection: {e}"),
            CallError::Server(e) => write!(f, "Redis answered an error: {e}"),
            CallError::Reply => f.write_str("unexpected reply to the script"),
        }
    }
}

fn classify(e: RedisError) -> CallError {
    // The error text may quote the URL the client was given: never its password.
    let text = super::redact_text(&e.to_string());
    if e.is_timeout() {
        CallError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::IoError
    {
        CallError::Connection(text)
    } else {
        CallError::Server(text)
    }
}

/// A connection, standalone, cluster or through Sentinel; cloned per call (each is a
/// multiplexed handle).
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// The master the sentinels name.
    Sentinel(Arc<SentinelLink>),
}

/// The Sentinel client and the connection to the master it last named.
pub struct SentinelLink {
    client: tokio::sync::Mutex<SentinelClient>,
    master: std::sync::Mutex<Option<MultiplexedConnection>>,
    options: AsyncConnectionConfig,
    /// Longest wait for asking the sentinels and connecting to the master.
    connect_timeout: Duration,
}

impl SentinelLink {
    /// The master's connection: the one in use, or (after a failure) a new one to the master
    /// the sentinels name now, within `connect_timeout`. One caller asks; the others wait.
    async fn master(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(c) = self.held() {
            return Ok(c);
        }
        // Boxed: redis-rs's Sentinel futures are deep, and every caller's would nest them.
        let ask = Box::pin(async {
            let mut client = self.client.lock().await;
            if let Some(c) = self.held() {
                return Ok(c);
            }
            // Asks the sentinels in turn, and checks the node it names answers ROLE as a master.
            let master = client.async_get_client().await?;
            let c = master.get_multiplexed_async_connection_with_config(&self.options).await?;
            *self.master.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
            Ok(c)
        });
        tokio::time::timeout(self.connect_timeout, ask).await.unwrap_or_else(|_| {
            Err(RedisError::from((ErrorKind::IoError, "no master from the sentinels within the connect timeout")))
        })
    }

    fn held(&self) -> Option<MultiplexedConnection> {
        self.master.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A call failed: the next one asks the sentinels again (the master may have moved, or this
    /// one may be a demoted master answering READONLY).
    fn forget(&self) {
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What `check --connect` prints.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `PING`'s round trip.
    pub round_trip: Duration,
    /// `redis_version` from `INFO server`.
    pub version: String,
    /// `cluster_enabled:1` in `INFO cluster`.
    pub cluster: bool,
}

impl Connection {
    /// Connects (and, for a cluster, reads its slot map), within `timeout` per step.
    pub async fn open(config: &SharedConfig) -> Result<Connection, CallError> {
        let root_cert = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| CallError::Connection(format!("ca_file: {e}")))?),
            None => None,
        };
        let certs = || redis::TlsCertificates { client_tls: None, root_cert: root_cert.clone() };
        let url = config.redis.as_str();
        let connect = async {
            if let Some(sentinel) = &config.sentinel {
                let link = sentinel_link(config, sentinel, root_cert.clone())?;
                link.master().await.map_err(classify)?;
                Ok(Connection::Sentinel(Arc::new(link)))
            } else if config.cluster {
                let mut builder = ClusterClientBuilder::new(vec![url])
                    .connection_timeout(config.timeout.max(Duration::from_millis(500)))
                    .response_timeout(config.timeout)
                    .retries(1);
                if config.redis.is_tls() {
                    builder = builder.certs(certs());
                }
                let client = builder.build().map_err(classify)?;
                client.get_async_connection().await.map(Connection::Cluster).map_err(classify)
            } else {
                let client = if config.redis.is_tls() {
                    redis::Client::build_with_tls(url, certs())
                } else {
                    redis::Client::open(url)
                }
                .map_err(classify)?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(config.timeout.max(Duration::from_millis(500)))
                    .set_response_timeout(config.timeout)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client, manager).await.map(Connection::Single).map_err(classify)
            }
        };
        // One connect may take longer than one round trip; it is still bounded.
        tokio::time::timeout(config.timeout.max(Duration::from_secs(2)), connect)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Connection::Single(c) => cmd.query_async(c).await,
            Connection::Cluster(c) => cmd.query_async(c).await,
            Connection::Sentinel(link) => {
                // Usually connected already ([`Connection::ready`]). A connection to a node
                // that is no master now (refused, READONLY, MASTERDOWN, LOADING: nothing ran) is
                // replaced once, from the sentinels, within the same timeout. A connection that
                // broke mid-call is not retried: the script may have run, and a second run
                // would take the request's own replay key for a replay.
                let mut master = link.master().await?;
                match cmd.query_async(&mut master).await {
                    Err(e) if master_gone(&e) => {
                        link.forget();
                        let mut master = link.master().await?;
                        cmd.query_async(&mut master).await
                    }
                    other => other,
                }
            }
        }
    }

    /// Under Sentinel: the master's connection is ready (one connect at most), before a call's
    /// own timeout starts.
    async fn ready(&mut self) -> Result<(), CallError> {
        if let Connection::Sentinel(link) = self {
            link.master().await.map_err(classify)?;
        }
        Ok(())
    }

    /// A call's outcome; under Sentinel a failure makes the next call ask for the master again.
    fn judged<T>(&self, result: Result<Result<T, RedisError>, tokio::time::error::Elapsed>) -> Result<T, CallError> {
        let outcome = match result {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(CallError::Timeout),
        };
        if let (Connection::Sentinel(link), Err(_)) = (self, &outcome) {
            link.forget();
        }
        outcome
    }

    /// One command, within `timeout`.
    pub async fn call<T: FromRedisValue>(&mut self, cmd: &Cmd, timeout: Duration) -> Result<T, CallError> {
        self.ready().await?;
        let result = tokio::time::timeout(timeout, self.query::<T>(cmd)).await;
        self.judged(result)
    }

    /// Runs the script over `keys` and `args`, within `timeout`.
    pub async fn run_script(
        &mut self,
        keys: &[String],
        args: &[u64],
        timeout: Duration,
    ) -> Result<Vec<i64>, CallError> {
        self.ready().await?;
        let call = async {
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha.arg(script_sha()).arg(keys.len()).arg(keys).arg(args);
            match self.query::<Vec<i64>>(&evalsha).await {
                Err(e) if e.kind() == ErrorKind::NoScriptError => {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(LUA).arg(keys.len()).arg(keys).arg(args);
                    self.query::<Vec<i64>>(&eval).await
                }
                other => other,
            }
        };
        let result = tokio::time::timeout(timeout, call).await;
        self.judged(result)
    }

    /// `INFO <section>`'s text; a cluster client asks every node and answers a map by node, of
    /// which the first is taken.
    async fn info_section(&mut self, section: &str) -> Result<String, RedisError> {
        let value: redis::Value = self.query(redis::cmd("INFO").arg(section)).await?;
        let value = match value {
            redis::Value::Map(nodes) => nodes.into_iter().next().map_or(redis::Value::Nil, |(_, v)| v),
            other => other,
        };
        String::from_redis_value(&value)
    }

    /// `PING`'s round trip, the server version and whether it is a cluster.
    pub async fn info(&mut self, timeout: Duration) -> Result<ServerInfo, CallError> {
        self.ready().await?;
        let call = async {
            let started = std::time::Instant::now();
            let _: String = self.query(&redis::cmd("PING")).await?;
            let round_trip = started.elapsed();
            let server = self.info_section("server").await?;
            let cluster = self.info_section("cluster").await?;
            Ok::<_, RedisError>(ServerInfo {
                round_trip,
                version: info_field(&server, "redis_version").unwrap_or("unknown").to_string(),
                cluster: info_field(&cluster, "cluster_enabled") == Some("1"),
            })
        };
        let result = tokio::time::timeout(timeout, call).await;
        self.judged(result)
    }
}

/// An error that says the node is not a master now and ran nothing: it refused the
/// connection, or it was demoted (`READONLY`) or is between roles.
fn master_gone(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError)
}

/// The Sentinel client for `sentinel`: the master is reached with `redis`'s password, database
/// and TLS (and `ca_file`); the sentinels with the same TLS, without a password.
fn sentinel_link(
    config: &SharedConfig,
    sentinel: &super::SentinelConfig,
    root_cert: Option<Vec<u8>>,
) -> Result<SentinelLink, CallError> {
    let tls = config.redis.is_tls();
    let nodes = sentinel.nodes.iter().map(|(host, port)| {
        if tls {
            ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    });
    let mut builder =
        SentinelClientBuilder::new(nodes, sentinel.master.clone(), SentinelServerType::Master).map_err(classify)?;
    let info = config.redis.as_str().into_connection_info().map_err(classify)?;
    builder = builder.set_client_to_redis_db(info.redis.db);
    if let Some(user) = info.redis.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = info.redis.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if tls {
        let certs = || redis::TlsCertificates { client_tls: None, root_cert: root_cert.clone() };
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certs())
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_certificates(certs());
    }
    let client = builder.build().map_err(classify)?;
    let connect_timeout = config.timeout.max(Duration::from_millis(500));
    let options =
        AsyncConnectionConfig::new().set_connection_timeout(connect_timeout).set_response_timeout(config.timeout);
    Ok(SentinelLink { client: tokio::sync::Mutex::new(client), master: Default::default(), options, connect_timeout })
}

/// The script's SHA-1, as `EVALSHA` wants it.
fn script_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(LUA).get_hash().to_string())
}

/// `name:value` from an `INFO` answer.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}
