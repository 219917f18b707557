//! Adds the git commit to `--version` when built from a checkout (`0.1.0 (commit 1a2b3c4d5e6f)`);
//! a build from a source archive without `.git` says the version alone.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let git = Path::new(".git");
    if git.exists() {
        // A new commit moves the branch the HEAD file names, not the HEAD file itself.
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(reference) = std::fs::read_to_string(git.join("HEAD"))
            .ok()
            .and_then(|head| head.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        {
            println!("cargo:rerun-if-changed=.git/{reference}");
        }
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_hexdigit()));
    let version = env!("CARGO_PKG_VERSION");
    let full = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version.to_string(),
    };
    // Not a WOPI_GUARD_* name: cargo also sets this in the environment of `cargo test` and
    // `cargo run`, where every WOPI_GUARD_* variable is a configuration key.
    println!("cargo:rustc-env=WG_BUILD_VERSION={full}");
}
