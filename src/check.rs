//! `wopi-guard check`: validate the configuration as a start would read it (file, environment,
//! flags), try what a start would try (resolve the upstream, read the TLS files), print every
//! problem and every warning.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Override};

/// Prints the verdict on the configuration from `path` (optional) with `overrides` applied, as
/// the proxy would run it, and the effective main values; exit 1 when it would not start.
pub fn run(path: Option<&Path>, overrides: &[Override]) -> ExitCode {
    let name = path.map_or_else(|| "the configuration".to_string(), |p| p.display().to_string());
    let config = match Config::load_layered(path, overrides) {
        Ok(config) => config,
        Err(errors) => {
            println!("{name}: {} problem(s)", errors.0.len());
            for e in &errors.0 {
                println!("error: {}: {}", e.key, e.message);
            }
            return ExitCode::from(1);
        }
    };
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    for o in overrides {
        println!("from {}: {} = {}", o.origin, o.key(), o.value);
    }
    println!("listen = {}", config.listen);
    println!("admin_listen = {}", config.admin_listen);
    let u = &config.upstream;
    println!("upstream = {}://{}:{}", if u.tls { "https" } else { "http" }, u.host, u.port);
    println!("public_url = {}", config.public_url.as_str());
    println!("discovery.urls = {:?}", config.discovery.urls);
    let problems = crate::proxy::preflight(&config);
    if !problems.is_empty() {
        println!("{name}: valid, but a start would fail: {} problem(s)", problems.len());
        for problem in &problems {
            println!("error: {problem}");
        }
        return ExitCode::from(1);
    }
    println!("not checked: whether the ports are free, and whether discovery and the upstream answer");
    println!("{name}: OK");
    ExitCode::SUCCESS
}
