//! The buffer the verifier writes each request's signed bytes into, taken from a small free list
//! kept per worker thread and given back when the request ends, so a busy worker stops
//! allocating one per request. A request may end on another thread than it began (Pingora's
//! runtime steals work): the buffer then joins that thread's list. Nothing is borrowed across an
//! `.await`.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers kept per thread: enough for the requests one worker has in flight at once.
const KEEP: usize = 64;
/// A buffer grown larger than this (a long token) is freed, not kept.
const KEEP_CAPACITY: usize = 16 * 1024;
/// A new buffer's size: a typical signed message (token, URL, timestamp) fits.
const INITIAL_CAPACITY: usize = 512;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer on loan from this thread's free list.
#[derive(Debug)]
pub struct Scratch(Vec<u8>);

impl Scratch {
    /// A buffer from this thread's list, or a new one.
    pub fn take() -> Scratch {
        let kept = FREE.try_with(|free| free.borrow_mut().pop()).ok().flatten();
        Scratch(kept.unwrap_or_else(|| Vec::with_capacity(INITIAL_CAPACITY)))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > KEEP_CAPACITY {
            return;
        }
        buffer.clear();
        // At thread exit the list is gone: the buffer is simply freed.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEEP {
                free.push(buffer);
            }
        });
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> usize {
        FREE.with(|free| free.borrow().len())
    }

    #[test]
    fn a_buffer_is_given_back_cleared_and_reused() {
        let mut first = Scratch::take();
        first.extend_from_slice(b"signed bytes");
        let address = first.as_ptr();
        drop(first);
        let again = Scratch::take();
        assert_eq!(again.as_ptr(), address, "the same allocation, not a new one");
        assert!(again.is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_oversized_buffers_are_freed() {
        let many: Vec<Scratch> = (0..KEEP + 10).map(|_| Scratch::take()).collect();
        drop(many);
        assert_eq!(kept(), KEEP);
        let mut big = Scratch::take();
        big.reserve(KEEP_CAPACITY * 2);
        let before = kept();
        drop(big);
        assert_eq!(kept(), before, "a buffer over {KEEP_CAPACITY} bytes is not kept");
    }
}
