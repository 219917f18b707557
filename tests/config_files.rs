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
