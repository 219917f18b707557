//! The discovery XML parser: any bytes give keys or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wopi_guard::keys::parse_discovery(data);
    let _ = wopi_guard::keys::inspect_discovery(data);
});
