//! `wopi-guard check`: validate the configuration as a start would read it (file, environment,
//! flags), try what a start would try (resolve the upstream, read the TLS files), print every
//! problem and every warning. With `--connect`, it also reaches `[shared] redis`.

use std::path::Path;
use std::process::ExitCode;

use std::time::Duration;

use crate::config::{Config, Override};
use crate::shared::{Connection, SharedConfig};

/// Prints the verdict on the configuration from `path` (optional) with `overrides` applied, as
/// the proxy would run it, and the effective main values; exit 1 when it would not start, or
/// (with `connect`) when `[shared] redis` does not answer.
pub fn run(path: Option<&Path>, overrides: &[Override], connect: bool) -> ExitCode {
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
        println!("from {}: {} = {}", o.origin, o.key(), shown(&o.key(), &o.value));
    }
    println!("listen = {}", config.listen);
    println!("admin_listen = {}", config.admin_listen);
    for (i, route) in config.routes.iter().enumerate() {
        // Without `[[routes]]` the one route's keys print as they always did.
        let p = if config.routed { format!("routes[{i}].") } else { String::new() };
        if config.routed {
            println!("{p}host = {}", route.host);
        }
        for u in &route.upstream {
            println!("{p}upstream = {}://{u}", if u.tls { "https" } else { "http" });
        }
        if let Some(h) = &route.health {
            println!("{p}health = GET {} every {:?} (timeout {:?})", h.path, h.interval, h.timeout);
        }
        println!("{p}public_url = {}", route.public_url.as_str());
        println!("{p}discovery.urls = {:?}", route.discovery.urls);
    }
    if let Some(shared) = &config.shared {
        println!(
            "shared.redis = {}{} (on_error = {}, timeout = {:?})",
            shared.redis,
            if shared.cluster { ", cluster" } else { "" },
            shared.on_error.name(),
            shared.timeout
        );
    }
    let problems = crate::proxy::preflight(&config);
    if !problems.is_empty() {
        println!("{name}: valid, but a start would fail: {} problem(s)", problems.len());
        for problem in &problems {
            println!("error: {problem}");
        }
        return ExitCode::from(1);
    }
    if let (true, Some(shared)) = (connect, &config.shared) {
        if let Err(e) = reach(shared) {
            println!("error: shared.redis: {} does not answer: {e}", shared.redis);
            println!("{name}: valid, but Redis cannot be reached");
            return ExitCode::from(1);
        }
    }
    println!("not checked: whether the ports are free, and whether discovery and the upstream answer");
    if config.shared.is_some() && !connect {
        println!("not checked: whether Redis answers (`check --connect` tries it)");
    }
    println!("{name}: OK");
    ExitCode::SUCCESS
}

/// An override's value as `check` prints it: secrets never.
fn shown(key: &str, value: &toml::Value) -> String {
    match key {
        "shared.hash_key" => "\"***\"".to_string(),
        "shared.redis" => crate::shared::redact_text(&value.to_string()),
        _ => value.to_string(),
    }
}

/// Connects to `[shared] redis` as a start would, and prints what it answered.
fn reach(shared: &SharedConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let info = runtime.block_on(async {
        let mut connection = Connection::open(shared).await?;
        connection.info(shared.timeout.max(Duration::from_secs(1))).await
    });
    let info = info.map_err(|e| e.to_string())?;
    println!(
        "shared.redis: PING {:.2} ms, Redis {}, {}",
        info.round_trip.as_secs_f64() * 1000.0,
        info.version,
        if info.cluster { "cluster mode" } else { "standalone" }
    );
    Ok(())
}
