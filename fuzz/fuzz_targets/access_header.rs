//! The access_header parser (Collabora's `access_header` query parameter): any target gives
//! headers or an error; every header it produces is a valid HTTP header; stripping never panics
//! and the parsed query never skips a strip a full scan would make.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = wopi_guard::proof::Query::parse(data);
    if let Ok(Some(parsed)) = wopi_guard::policy::access_headers(&query, &[http::header::AUTHORIZATION]) {
        for (name, value) in &parsed.set {
            assert!(!name.as_str().is_empty());
            assert!(!value.as_bytes().contains(&b'\n') && !value.as_bytes().contains(&b'\r'));
        }
    }
    // The parsed query never hides an `access_header` that a full scan would strip.
    let scanned = wopi_guard::proof::Query { mentions_access_header: true, ..query.clone() };
    assert_eq!(
        wopi_guard::policy::strip_access_header(data, &query),
        wopi_guard::policy::strip_access_header(data, &scanned)
    );
});
