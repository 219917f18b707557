//! Stopping a child process that leads a process group of its own (started with
//! `process_group(0)`), such as nginx: killing only nginx's master would leave its workers running,
//! each holding the listening port. Shared by the integration tests and the load bench (which
//! includes this file by path).

use std::process::Child;
use std::time::{Duration, Instant};

/// Stops `child` and everything in its process group, and reaps it. With `grace`, SIGTERM comes
/// first (nginx's master then stops and reaps its workers) and the group is killed only if the
/// child is still there after `grace`. Nothing is signalled once the child is reaped: its pid,
/// and so its group id, may then belong to someone else.
pub fn stop_group(child: &mut Child, grace: Option<Duration>) {
    let Ok(pid) = i32::try_from(child.id()) else { return };
    let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
    if let Some(grace) = grace.filter(|_| running(child)) {
        // SAFETY: kill(2) on our own child's pid, not reaped yet (only this handle reaps it).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && running(child) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if running(child) {
        // SAFETY: the child is not reaped, so its pid still names the process group it leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}
