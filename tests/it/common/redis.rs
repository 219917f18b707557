//! A real `redis-server` (Debian's package, which `make test` installs) on a free port, in a
//! directory of its own, stopped when dropped: standalone, a TLS one, or a 3-node Cluster made
//! by `redis-cli --cluster create`. Never a mock.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::child::stop_group;
use super::free_port;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    /// With TLS: the CA file clients trust.
    ca: Option<PathBuf>,
    /// Arguments beyond port, bind, persistence and password.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port, with `requirepass` when `password` is given.
    pub fn start(password: Option<&str>) -> RedisServer {
        Self::start_with(free_port().port(), password, None, Vec::new())
    }

    /// Starts one that speaks only TLS, with `(cert, key)` issued by the CA in `ca`.
    pub fn start_tls(password: Option<&str>, (cert, key): &(PathBuf, PathBuf), ca: &Path) -> RedisServer {
        let args = ["--tls-cert-file", path(cert), "--tls-key-file", path(key), "--tls-ca-cert-file", path(ca)];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--tls-auth-clients", "no"].map(String::from));
        Self::start_with(free_port().port(), password, Some(ca.to_owned()), args)
    }

    fn start_with(port: u16, password: Option<&str>, ca: Option<PathBuf>, args: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port,
            password: password.map(str::to_string),
            dir: tempfile::tempdir().unwrap(),
            ca,
            args,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match self.ca {
            Some(_) => cmd.args(["--port", "0", "--tls-port", &port]),
            None => cmd.args(["--port", &port]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let child =
            cmd.spawn().expect("redis-server is not installed: `make test` installs it (Debian package redis-server)");
        self.child = Some(child);
        self.wait_answering();
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).first().is_some_and(|l| l == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// `redis[s]://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Stops it at once (SIGKILL): its state is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, None);
        }
    }

    /// `redis-cli --raw` against it, with its password: one line per value.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["--raw"];
        all.extend_from_slice(args);
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        if let Some(ca) = &self.ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(&all).output().expect("redis-cli is not installed: `make test` installs it (redis-tools)");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// How many script calls (EVALSHA and EVAL) it has served.
    pub fn script_calls(&self) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        stats
            .iter()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child, not reaped (only `kill` reaps it, and takes the handle).
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A free port whose cluster bus port (+ 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port().port();
        if port < 55_536 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A 3-node Redis Cluster (3 masters, no replicas), made as an operator would make one.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let args =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(cluster_port(), None, None, args.map(String::from).to_vec()))
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Until every node says `cluster_state:ok`.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).iter().any(|l| l == "cluster_state:ok")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    /// The seed node's URL.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Keys over all nodes.
    pub fn keys(&self) -> Vec<String> {
        self.nodes.iter().flat_map(|n| n.cli(&["--scan", "--pattern", "*"])).collect()
    }

    /// Stops every node (SIGKILL); their data is gone, their cluster config stays on disk.
    pub fn kill(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::kill);
    }

    /// Starts every node again from its cluster config; returns once the cluster is ok.
    pub fn restart(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::restart);
        self.wait_ok();
    }

    /// How many script calls all nodes have served.
    pub fn script_calls(&self) -> u64 {
        self.nodes.iter().map(RedisServer::script_calls).sum()
    }
}

/// A master, a replica and three sentinels (Debian's `redis-sentinel`) monitoring them as
/// `mymaster` (quorum 2, down after 1 s), as an operator would run them for failover; master
/// and replica require [`RedisSentinels::PASSWORD`].
pub struct RedisSentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

impl RedisSentinels {
    pub const MASTER: &'static str = "mymaster";
    pub const PASSWORD: &'static str = "sentinel-s3cret";

    pub fn start() -> RedisSentinels {
        let auth = || vec!["--masterauth".to_string(), Self::PASSWORD.into()];
        let master = RedisServer::start_with(free_port().port(), Some(Self::PASSWORD), None, auth());
        let mut replicaof = auth();
        replicaof.extend(["--replicaof".to_string(), "127.0.0.1".into(), master.port.to_string()]);
        let replica = RedisServer::start_with(free_port().port(), Some(Self::PASSWORD), None, replicaof);
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port().port();
            let conf = dir.path().join(format!("sentinel-{n}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {m} 1000\nsentinel failover-timeout {m} 10000\n\
                 sentinel parallel-syncs {m} 1\nsentinel auth-pass {m} {}\n",
                path(dir.path()),
                Self::MASTER,
                master.port,
                Self::PASSWORD,
                m = Self::MASTER,
            );
            std::fs::write(&conf, text).unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("redis-sentinel is not installed: `make test` installs it (Debian package redis-sentinel)");
            sentinels.push((child, port));
        }
        let setup = RedisSentinels { master, replica, sentinels, _dir: dir };
        // Ready once every sentinel sees the replica and the other two sentinels.
        let deadline = Instant::now() + Duration::from_secs(20);
        for (_, port) in &setup.sentinels {
            loop {
                let ok = setup
                    .ask(*port, &["SENTINEL", "ckquorum", Self::MASTER])
                    .first()
                    .is_some_and(|l| l.starts_with("OK"));
                let replicas = setup.ask(*port, &["SENTINEL", "replicas", Self::MASTER]).len();
                let others = setup.ask(*port, &["SENTINEL", "sentinels", Self::MASTER]).len();
                if ok && replicas > 0 && others > 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "the sentinels never agreed on mymaster");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        setup
    }

    /// `host:port` of each sentinel, as `[shared] sentinels` lists them.
    pub fn nodes(&self) -> Vec<String> {
        self.sentinels.iter().map(|(_, port)| format!("127.0.0.1:{port}")).collect()
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        let port = self.sentinels[0].1;
        self.ask(port, &["SENTINEL", "get-master-addr-by-name", Self::MASTER]).get(1)?.parse().ok()
    }

    fn ask(&self, port: u16, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["--raw", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            stop_group(child, None);
        }
    }
}
