//! The configuration parser and validator: any text gives a configuration or a list of errors,
//! each naming a key.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = wopi_guard::config::Config::from_toml(text) {
        assert!(!errors.0.is_empty());
        assert!(errors.0.iter().all(|e| !e.key.is_empty() && !e.message.is_empty()));
    }
});
