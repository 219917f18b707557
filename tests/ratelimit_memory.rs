//! A spray from a million distinct client addresses cannot grow rate-limit state without bound:
//! the heap the per-IP limiter holds is measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use wopi_guard::operation::Operation;
use wopi_guard::policy::{Budget, LimitConfig, RateLimitConfig, RateLimits};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_million_addresses_stay_under_100_mib_and_more_are_capped() {
    let per_ip = LimitConfig { general: Some(Budget { per_second: 50.0, burst: 100 }), operations: Vec::new() };
    let config = RateLimitConfig { max_tracked_keys: 1_000_000, per_ip: Some(per_ip), ..RateLimitConfig::default() };
    let before = LIVE.load(Ordering::Relaxed);
    let limits = RateLimits::new(&config);
    for i in 0..2_000_000u32 {
        let _ = limits.check_ip(Some(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))), Operation::CheckFileInfo);
        if i == 999_999 {
            let bytes = LIVE.load(Ordering::Relaxed) - before;
            println!(
                "1,000,000 distinct addresses: {} tracked, {:.1} MiB",
                limits.tracked_ips(),
                bytes as f64 / 1048576.0
            );
            assert!(bytes < 100 << 20, "{bytes} bytes for a million addresses");
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!("2,000,000 distinct addresses: {} tracked, {:.1} MiB", limits.tracked_ips(), bytes as f64 / 1048576.0);
    // Capped at max_tracked_keys; on the real clock the sweep has also dropped the keys whose
    // budget refilled (burst 100 at 50/s: 2 s).
    assert!(limits.tracked_ips() <= 1_000_000, "capped at max_tracked_keys");
    assert!(bytes < 100 << 20);
}
