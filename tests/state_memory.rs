//! State that grows with traffic stays bounded: rate-limit state under a spray from a million
//! distinct client addresses, and the replay cache at its default size, measured with a counting
//! allocator (the tests here take turns, so each sees only its own allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use wopi_guard::operation::Operation;
use wopi_guard::policy::{Budget, LimitConfig, RateLimitConfig, RateLimits, ReplayCache, Seen};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_ip = LimitConfig { general: Some(Budget { per_second: 50.0, burst: 100 }), operations: Vec::new() };
    let config = RateLimitConfig { max_tracked_keys: 1_000_000, per_ip: Some(per_ip), ..RateLimitConfig::default() };
    let before = LIVE.load(Ordering::Relaxed);
    let limits = RateLimits::new(&config);
    for i in 0..2_000_000u32 {
        let _ = limits.check_ip(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), Operation::CheckFileInfo);
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

#[test]
fn a_full_replay_cache_of_a_million_proofs() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = LIVE.load(Ordering::Relaxed);
    let cache = ReplayCache::new(1_000_000, std::time::Duration::from_secs(1500));
    let now = std::time::Instant::now();
    for i in 0..1_000_000u64 {
        assert_eq!(cache.check_and_remember(&i.to_le_bytes(), now), Seen::Fresh);
    }
    assert_eq!(cache.check_and_remember(b"one more", now), Seen::Full);
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!("replay cache, 1,000,000 proofs: {:.1} MiB", bytes as f64 / 1048576.0);
    assert!(bytes < 100 << 20, "{bytes} bytes");
}
