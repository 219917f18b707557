//! `wopi-guard demo`: the main job on embedded defaults, in one process. A stand-in office
//! server (fresh key pair, its discovery document), a stand-in WOPI host, and the proxy in front
//! of it; genuine and forged requests go through and a table says what was forwarded, what was
//! refused, and why. Then it keeps serving and prints curl lines to try.

mod scenarios;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::proof::ticks_at;
use crate::proxy::{self, ShutdownTrigger};
use crate::testkit::{FakeHost, FakeOffice};

pub use scenarios::{run_scenarios, Outcome};

/// The demo's configuration: everything else is the documented default.
fn demo_config(listen: SocketAddr, admin: SocketAddr, host: &str, discovery: &str) -> String {
    format!(
        r#"
listen = "{listen}"
admin_listen = "{admin}"
upstream = "{host}"
public_url = "http://{listen}"

[discovery]
urls = ["{discovery}"]
min_refresh_interval = "1s"

[proof]
paths = ["/wopi/"]

[server]
threads = 2
grace_period = "1s"
"#
    )
}

/// Runs the demo; returns when done (`once`) or on Ctrl-C.
pub fn run(listen: SocketAddr, admin_listen: SocketAddr, once: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(demo(listen, admin_listen, once))
}

async fn demo(listen: SocketAddr, admin_listen: SocketAddr, once: bool) -> Result<(), String> {
    println!("Starting a stand-in office server (fresh 2048-bit proof key), a stand-in WOPI host and wopi-guard...");
    let office = FakeOffice::start(2048).await;
    let host = FakeHost::start().await;
    let text = demo_config(listen, admin_listen, &host.url(), &office.discovery_url());
    let config = Config::from_toml(&text).map_err(|e| format!("demo configuration: {e}"))?;

    let (trigger, handle) = ShutdownTrigger::new();
    let proxy_config = config.clone();
    let proxy_thread = std::thread::spawn(move || proxy::run(&proxy_config, Some(Box::new(handle))));
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let ready = format!("http://{admin_listen}/ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if proxy_thread.is_finished() {
            let result = proxy_thread.join().map_err(|_| "the proxy thread panicked".to_string())?;
            return result.map_err(|e| e.to_string()).and(Err("the proxy stopped during start-up".into()));
        }
        if client.get(&ready).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            trigger.shutdown();
            return Err(format!("the proxy did not become ready on {admin_listen} within 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = format!("http://{listen}");
    let outcomes = run_scenarios(&client, &office, &host, &base).await;
    println!("\n{}", scenarios::table(&outcomes));
    let unexpected = outcomes.iter().filter(|o| !o.as_expected()).count();
    if unexpected > 0 {
        println!("{unexpected} request(s) did not go as expected: see the rows marked '!!'.");
    }

    if !once {
        print_curl_lines(&office, &base, admin_listen);
        println!("Serving until Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
    }
    trigger.shutdown();
    let stopped = tokio::task::spawn_blocking(move || proxy_thread.join()).await;
    match (stopped, unexpected) {
        (Ok(Ok(Ok(()))), 0) => Ok(()),
        (Ok(Ok(Err(e))), _) => Err(e.to_string()),
        (_, 0) => Err("the proxy did not stop cleanly".into()),
        (_, n) => Err(format!("{n} demo request(s) did not go as expected")),
    }
}

fn print_curl_lines(office: &FakeOffice, base: &str, admin: SocketAddr) {
    let url = format!("{base}/wopi/files/demo?access_token=try-me");
    let proof = office.sign(&url, ticks_at(SystemTime::now()));
    let headers: String = proof.headers().iter().map(|(n, v)| format!(" \\\n  -H '{n}: {v}'")).collect();
    println!("\nTry it yourself (signed now; the proof stays valid for 20 minutes):");
    println!("\n# a genuine CheckFileInfo: forwarded, 200\ncurl -i '{url}'{headers}");
    let tampered = url.replace("demo?", "other?");
    println!("\n# the same proof on another file: refused, 500\ncurl -i '{tampered}'{headers}");
    println!("\n# no proof at all: refused, 500\ncurl -i '{url}'");
    println!("\n# not under /wopi/: passes untouched\ncurl -i '{base}/status'");
    println!("\n# health\ncurl -i http://{admin}/ping\ncurl -i http://{admin}/ready\n");
}
