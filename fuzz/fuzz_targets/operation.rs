//! The WOPI operation classifier and the protected-path normaliser on arbitrary requests.
#![no_main]
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "X"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(2, |&b| b == 0xFF);
    let target = parts.next().unwrap_or_default();
    let override_ = parts.next();
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let _ = wopi_guard::operation::classify(method, target, override_, selector & 0x80 != 0);
    let rules = wopi_guard::paths::PathRules::new(&["/wopi/".to_string()]);
    let _ = rules.is_protected(target);
    let _ = wopi_guard::paths::normalise(target);
});
