//! Every example in config/ loads and validates, so the examples never rot.

use std::path::{Path, PathBuf};
use std::process::Command;
use wopi_guard::config::Config;

#[test]
fn every_config_example_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "found {seen} examples in {}", dir.display());
}

/// Every route a host serves its WOPI controller at is protected by the shipped configuration:
/// an unsigned request there would otherwise be forwarded.
#[test]
fn shipped_configs_protect_every_route_to_the_wopi_controller() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let load = |name: &str| Config::load(&dir.join(name)).unwrap();
    let nextcloud = load("nextcloud-collabora.toml");
    for target in [
        "/index.php/apps/richdocuments/wopi/files/1?access_token=x",
        // Pretty URLs (front_controller_active): the same controller without /index.php.
        "/apps/richdocuments/wopi/files/1?access_token=x",
        "/apps/richdocuments/wopi/files/1/contents?access_token=x",
        "/Apps/RichDocuments/WOPI/files/1",
        "//apps/richdocuments/./wopi/files/1",
    ] {
        assert!(nextcloud.first_route().proof.paths.is_protected(target.as_bytes()), "{target}");
        assert!(!nextcloud.first_route().proof.exempt_paths.is_protected(target.as_bytes()), "{target} exempt");
    }
    for settings in ["/index.php/apps/richdocuments/wopi/settings", "/apps/richdocuments/wopi/settings"] {
        assert!(nextcloud.first_route().proof.exempt_paths.is_protected(settings.as_bytes()), "{settings}");
    }
    for name in ["onlyoffice.toml", "office-online.toml", "wopi-guard.toml"] {
        let config = load(name);
        assert!(config.first_route().proof.paths.is_protected(b"/wopi/files/1?access_token=x"), "{name}");
        assert!(config.first_route().proof.paths.is_protected(b"/WOPI//files/1"), "{name}");
    }
}

/// The several-hosts example: two routes, each with its own office server, upstream and policy,
/// and the top level's defaults under what each sets.
#[test]
fn the_several_hosts_example_has_two_routes_with_their_own_keys() {
    use wopi_guard::config::RouteHost;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/several-hosts.toml");
    let config = Config::load(&path).unwrap();
    assert!(config.routed);
    let hosts: Vec<&RouteHost> = config.routes.iter().map(|r| &r.host).collect();
    assert_eq!(hosts, [&RouteHost::Name("cloud.example.com".into()), &RouteHost::Name("files.example.com".into())]);
    let (cloud, files) = (&config.routes[0], &config.routes[1]);
    assert_ne!(cloud.discovery.urls, files.discovery.urls);
    assert_eq!((cloud.upstream.len(), files.upstream.len()), (2, 1));
    assert!(cloud.health.is_some() && files.health.is_none());
    assert!(cloud.proof.paths.is_protected(b"/apps/richdocuments/wopi/files/1"));
    assert!(
        files.proof.paths.is_protected(b"/wopi/files/1")
            && !files.proof.paths.is_protected(b"/apps/richdocuments/wopi/files/1")
    );
    assert_eq!(files.operations.deny, [wopi_guard::operation::Operation::DeleteFile]);
    for route in &config.routes {
        assert!(
            route.ip.allow.admits("10.0.2.7".parse().unwrap()) && !route.ip.allow.admits("10.9.9.9".parse().unwrap())
        );
        assert!(route.rate_limit.per_ip.is_some(), "the top level's limit is every route's default");
    }
    assert_eq!(config.server.connections.per_ip, Some(200));
}

/// The protocol notes the code cites (`docs/proof.md §N`, `docs/operations.md`) are in the
/// repository, and so is the LICENSE that Cargo.toml names.
#[test]
fn cited_docs_and_the_license_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cited = std::collections::BTreeSet::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("docs/") {
                    let name: String =
                        text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).collect();
                    cited.insert(name.trim_end_matches('.').to_string());
                }
            }
        }
    }
    assert!(cited.contains("docs/proof.md") && cited.contains("docs/operations.md"), "{cited:?}");
    for doc in &cited {
        assert!(root.join(doc).is_file(), "{doc} is cited in src/ but not in the repository");
    }
    let license = std::fs::read_to_string(root.join("LICENSE")).expect("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
}

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)).unwrap()
}

/// The unit with its commented options (`# Key=...` lines) switched on.
fn uncommented(unit: &str) -> String {
    unit.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.split_once('=').is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ')) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Key=value` settings of a unit's [Service] section, in order.
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

/// `wopi-guard check` on the reference config with these WOPI_GUARD_* variables.
fn check_with(vars: &[(String, String)]) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wopi-guard.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wopi-guard"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("WOPI_GUARD_")) {
        command.env_remove(name);
    }
    let out = command.args(["check", "--config", config]).envs(vars.iter().cloned()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{vars:?}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for (name, _) in vars {
        assert!(stdout.contains(&format!("from {name}: ")), "{name} was not read:\n{stdout}");
    }
}

#[test]
fn the_systemd_unit_verifies_and_its_settings_work() {
    let shipped = example("wopi-guard.service");
    let all_on = uncommented(&shipped);
    let dir = tempfile::tempdir().unwrap();
    for (name, unit) in [("wopi-guard.service", &shipped), ("wopi-guard-all.service", &all_on)] {
        let path = dir.path().join(name);
        std::fs::write(&path, unit.replace("/usr/local/bin/wopi-guard", env!("CARGO_BIN_EXE_wopi-guard"))).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd package; make test-deps installs it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "{name}: {stderr}");
    }
    // Every capability the unit may grant is inside its bounding set, or it could never work.
    let bounding_set = settings(&all_on, "CapabilityBoundingSet").join(" ");
    let bounding: Vec<&str> = bounding_set.split_whitespace().collect();
    let ambient = settings(&all_on, "AmbientCapabilities");
    assert!(ambient.contains(&"CAP_NET_BIND_SERVICE"), "the unit offers the low-port capability");
    for cap in ambient.iter().flat_map(|a| a.split_whitespace()) {
        assert!(bounding.contains(&cap), "{cap} is outside CapabilityBoundingSet {bounding:?}");
    }
    assert_eq!(settings(&shipped, "AmbientCapabilities"), Vec::<&str>::new(), "no capability unless asked for");
    assert_eq!(settings(&shipped, "DynamicUser"), ["yes"]);
    assert_eq!(settings(&shipped, "StateDirectory"), ["wopi-guard"]);
    // A dynamic user cannot read a root-only key: systemd hands it over as credentials.
    let credentials = settings(&all_on, "LoadCredential");
    assert!(credentials.iter().any(|c| c.starts_with("tls-key.pem:")), "{credentials:?}");

    // Every WOPI_GUARD_* the unit sets (commented ones switched on) is a setting `check`
    // accepts, with %S (state) and %d (credentials) standing for real directories.
    let pki = crate::common::Pki::new("unit-ca");
    let (cert, key) = pki.leaf("unit");
    let (state, creds) = (dir.path().join("state"), dir.path().join("creds"));
    std::fs::create_dir_all(state.join("wopi-guard")).unwrap();
    std::fs::create_dir_all(&creds).unwrap();
    for c in &credentials {
        let (name, source) = c.split_once(':').unwrap();
        let from: PathBuf = match source {
            "/etc/wopi-guard/cert.pem" => cert.clone(),
            "/etc/wopi-guard/key.pem" => key.clone(),
            other => panic!("unexpected credential source {other}"),
        };
        std::fs::copy(from, creds.join(name)).unwrap();
    }
    let vars: Vec<(String, String)> = settings(&all_on, "Environment")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            let value = value.replace("%S", &state.display().to_string()).replace("%d", &creds.display().to_string());
            (name.to_string(), value)
        })
        .collect();
    assert!(vars.iter().any(|(n, _)| n == "WOPI_GUARD_DISCOVERY__CACHE_FILE"), "{vars:?}");
    assert!(vars.iter().any(|(n, _)| n == "WOPI_GUARD_TLS__KEY_FILE"), "{vars:?}");
    check_with(&vars);
}

#[test]
fn the_dockerfile_settings_work_and_the_build_context_leaves_target_out() {
    let dockerfile = example("Dockerfile");
    // ENV lines, continued with backslashes.
    let env_block: String = dockerfile
        .split("\nENV ")
        .skip(1)
        .map(|rest| rest.split("\n").take_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join(" ");
    let env_block = env_block.replace("\\\n", " ");
    let vars: Vec<(String, String)> = env_block
        .split_whitespace()
        .filter_map(|p| p.split_once('=').map(|(n, v)| (n.to_string(), v.to_string())))
        .collect();
    let get = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("WOPI_GUARD_ADMIN_LISTEN"), Some("0.0.0.0:9090"), "probes reach the admin port: {vars:?}");
    assert_eq!(get("WOPI_GUARD_DISCOVERY__CACHE_FILE"), Some("/var/lib/wopi-guard/keys.json"));
    assert!(dockerfile.contains("install -d -o 10001 -g 10001 -m 0750 /var/lib/wopi-guard"));
    assert!(dockerfile.contains("\nUSER 10001:10001\n"), "runs as a non-root user");
    let dir = tempfile::tempdir().unwrap();
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(n, v)| {
            let v = v.replace("/var/lib/wopi-guard", &dir.path().display().to_string());
            (n, v)
        })
        .collect();
    check_with(&vars);
    // The profile the image ships is the stripped one.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let release = manifest.split("[profile.release]").nth(1).unwrap().split("\n[").next().unwrap();
    assert!(release.contains("strip = true") || release.contains("strip = \"symbols\""), "{release}");
    let ignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.dockerignore")).unwrap();
    for path in ["target/", "fuzz/target/"] {
        assert!(ignore.lines().any(|l| l.trim() == path), "{path} is sent to the Docker daemon:\n{ignore}");
    }
}
