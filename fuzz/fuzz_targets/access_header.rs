//! The access_header parser (Collabora's `access_header` query parameter): any target gives
//! headers or an error; every header it produces is a valid HTTP header; stripping never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(parsed)) = wopi_guard::policy::access_headers(data) {
        for (name, value) in &parsed.set {
            assert!(!name.as_str().is_empty());
            assert!(!value.as_bytes().contains(&b'\n') && !value.as_bytes().contains(&b'\r'));
        }
    }
    let _ = wopi_guard::policy::strip_access_header(data);
});
