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
