//! Every example in config/ loads and validates, so the examples never rot.

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
        assert!(nextcloud.proof.paths.is_protected(target.as_bytes()), "{target}");
        assert!(!nextcloud.policy.exempt_paths.is_protected(target.as_bytes()), "{target} exempt");
    }
    for settings in ["/index.php/apps/richdocuments/wopi/settings", "/apps/richdocuments/wopi/settings"] {
        assert!(nextcloud.policy.exempt_paths.is_protected(settings.as_bytes()), "{settings}");
    }
    for name in ["onlyoffice.toml", "office-online.toml", "wopi-guard.toml"] {
        let config = load(name);
        assert!(config.proof.paths.is_protected(b"/wopi/files/1?access_token=x"), "{name}");
        assert!(config.proof.paths.is_protected(b"/WOPI//files/1"), "{name}");
    }
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
