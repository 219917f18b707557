//! `wopi-guard check`: validate a file, print every problem and every warning.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Override};

/// Prints the verdict on `path` with `env` applied (as the proxy would run it), and the
/// effective main values; non-zero exit when the result is not valid.
pub fn run(path: &Path, env: &[Override]) -> ExitCode {
    match Config::load_layered(Some(path), env) {
        Ok(config) => {
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            for o in env {
                println!("from the environment: {} = {} ({})", o.key(), o.value, o.origin);
            }
            println!("listen = {}", config.listen);
            println!("admin_listen = {}", config.admin_listen);
            let u = &config.upstream;
            println!("upstream = {}://{}:{}", if u.tls { "https" } else { "http" }, u.host, u.port);
            println!("public_url = {}", config.public_url.as_str());
            println!("discovery.urls = {:?}", config.discovery.urls);
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{}: {} problem(s)", path.display(), errors.0.len());
            for e in &errors.0 {
                println!("error: {}: {}", e.key, e.message);
            }
            ExitCode::from(1)
        }
    }
}
