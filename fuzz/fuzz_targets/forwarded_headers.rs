//! The client-address and forward-auth parsers on arbitrary header values: the `X-Forwarded-For`
//! and `Forwarded` chains from a trusted peer, and the forward-auth URI/method pair. None may
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wopi_guard::policy::{client_address, original_request, ForwardAuthHeaders, ForwardedHeader, NetList};

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    let names = ["x-forwarded-for", "forwarded", "x-original-uri", "x-original-method", "x-forwarded-uri"];
    for (i, value) in data.split(|&b| b == 0xFF).enumerate() {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(names[i % names.len()], value);
        }
    }
    let trusted = NetList::new(vec!["127.0.0.0/8".parse().unwrap()]);
    for which in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let _ = client_address("127.0.0.1".parse().unwrap(), &headers, &trusted, which);
        let _ = wopi_guard::policy::forwarded_chain(&headers, which);
    }
    for which in [ForwardAuthHeaders::OriginalUri, ForwardAuthHeaders::ForwardedUri] {
        let _ = original_request(&headers, which);
    }
});
