//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A security reverse proxy for WOPI hosts: only requests signed by the office server's proof key
/// get through.
#[derive(Debug, Parser)]
#[command(name = "wopi-guard", version = env!("WG_BUILD_VERSION"), args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run the proxy with this configuration file (optional when the environment or the flags
    /// below give every required key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flags over the file's keys.
    #[command(flatten)]
    pub flags: ConfigFlags,
    /// What to do instead of running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that override the file's keys (highest precedence), for running and for `check`.
#[derive(Debug, Default, Args)]
pub struct ConfigFlags {
    /// Log line format (overrides `log.format`).
    #[arg(long, value_parser = ["json", "text"])]
    pub log_format: Option<String>,
    /// Overrides `listen`.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Overrides `admin_listen`.
    #[arg(long, value_name = "IP:PORT")]
    pub admin_listen: Option<String>,
    /// Overrides `upstream`.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Overrides `public_url`.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Overrides `discovery.urls` (repeat for several office servers).
    #[arg(long = "discovery-url", value_name = "URL")]
    pub discovery_urls: Vec<String>,
}

impl ConfigFlags {
    /// The overrides the flags give, highest precedence.
    pub fn flag_overrides(&self) -> Vec<crate::config::Override> {
        use crate::config::Override;
        use toml::Value::String as S;
        let mut out = Vec::new();
        for (flag, path, value) in [
            ("--listen", &["listen"][..], &self.listen),
            ("--admin-listen", &["admin_listen"][..], &self.admin_listen),
            ("--upstream", &["upstream"][..], &self.upstream),
            ("--public-url", &["public_url"][..], &self.public_url),
            ("--log-format", &["log", "format"][..], &self.log_format),
        ] {
            if let Some(v) = value {
                out.push(Override::flag(flag, path, S(v.clone())));
            }
        }
        if !self.discovery_urls.is_empty() {
            let urls = self.discovery_urls.iter().cloned().map(S).collect();
            out.push(Override::flag("--discovery-url", &["discovery", "urls"], toml::Value::Array(urls)));
        }
        out
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration (file, environment, flags, as a start would read them), try
    /// what a start would (resolve the upstream, read the TLS files), and print every problem.
    Check {
        /// The file to check (optional when the environment or the flags give every required key).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Flags over the file's keys, as for a start.
        #[command(flatten)]
        flags: ConfigFlags,
        /// Also connect to `[shared] redis`: print the round trip, the server version and
        /// whether it is a cluster; fail when it cannot be reached.
        #[arg(long)]
        connect: bool,
    },
    /// Print the proof keys a discovery document publishes (URL or file), with warnings.
    Discovery {
        /// `https://office.example.com/hosting/discovery` or a saved file.
        source: String,
        /// Fetch timeout.
        #[arg(long, default_value = "10s")]
        timeout: humantime::Duration,
        /// Trust only the CA certificates in this PEM file (default: the system's roots).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Fetch from every address the URL's host resolves to (one office node each) and print
        /// each node's keys: what `discovery.resolve_all` sees, and how to build `keys.pinned`.
        #[arg(long)]
        resolve_all: bool,
    },
    /// Explain why a captured request verifies or not.
    Explain {
        /// The capture: first line `GET https://host/wopi/files/1?access_token=...`, then headers.
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Keys (and public_url, window) from this configuration's discovery sources.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Keys from this discovery URL or file instead (repeatable).
        #[arg(long, value_name = "URL|FILE")]
        discovery: Vec<String>,
        /// Base for a capture whose first line has a path only.
        #[arg(long)]
        public_url: Option<String>,
        /// Judge the timestamp at this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<humantime::Timestamp>,
    },
    /// Sign a request with a PEM private key, as an office server would.
    Sign {
        /// The RSA private key (PEM, PKCS#8 or PKCS#1) for X-WOPI-Proof.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The key for X-WOPI-ProofOld (default: the same key).
        #[arg(long, value_name = "FILE")]
        old_key: Option<PathBuf>,
        /// The full URL the request will be sent to, as the office server would call it.
        #[arg(long)]
        url: String,
        /// X-WOPI-TimeStamp in .NET ticks (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Start a stand-in office server, a stand-in WOPI host and the proxy, send genuine and
    /// forged requests through, and print what happened.
    #[cfg(feature = "demo")]
    Demo {
        /// The proxy's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The admin endpoints' address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
        /// Exit after the table instead of serving on.
        #[arg(long)]
        once: bool,
    },
}
