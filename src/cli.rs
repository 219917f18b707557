//! Command-line interface.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A security reverse proxy for WOPI hosts: only requests signed by the office server's proof key
/// get through.
#[derive(Debug, Parser)]
#[command(name = "wopi-guard", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run the proxy with this configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Human-readable log lines instead of JSON.
    #[arg(long, global = true)]
    pub log_text: bool,
    /// What to do instead of running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print every problem.
    Check {
        /// The file to check.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the proof keys a discovery document publishes (URL or file), with warnings.
    Discovery {
        /// `https://office.example.com/hosting/discovery` or a saved file.
        source: String,
        /// Fetch timeout.
        #[arg(long, default_value = "10s")]
        timeout: humantime::Duration,
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
    Demo {
        /// The proxy's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The admin endpoints' address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Exit after the table instead of serving on.
        #[arg(long)]
        once: bool,
    },
}
