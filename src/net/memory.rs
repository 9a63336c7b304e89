//! Giving memory back to the operating system after a load peak.
//!
//! Sessions are many small heap blocks; after thousands close, glibc keeps
//! the freed pages in its arenas (it only trims the top of the main heap on
//! its own), so a server's RSS stays at its peak. `malloc_trim(0)` hands
//! every whole free page back (madvise), wherever it is in the heap. We call
//! it when the session count has fallen to half its peak, at most every few
//! seconds: no cost on the packet path, no allocator to build (mimalloc or
//! jemalloc would add a C build and return memory on their own schedule).

use std::time::Duration;

use crate::proto::Instant;

/// Peaks below this many sessions are not worth a trim.
const MIN_PEAK: usize = 256;
/// At most one trim this often.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Returns free heap pages to the OS; false where the allocator cannot.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Decides when a trim is due, from the session count over time.
#[derive(Debug, Default)]
pub struct Trimmer {
    peak: usize,
    last: Option<Instant>,
}

impl Trimmer {
    /// Records the current session count; true when memory should be
    /// released now (the count has halved since its peak).
    pub fn observe(&mut self, sessions: usize, now: Instant) -> bool {
        self.peak = self.peak.max(sessions);
        let due = self.peak >= MIN_PEAK
            && sessions * 2 <= self.peak
            && self
                .last
                .is_none_or(|t| now.saturating_since(t) >= MIN_INTERVAL);
        if due {
            self.last = Some(now);
            self.peak = sessions;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_the_count_halves_and_not_too_often() {
        let t = Instant::from_micros(1_000_000);
        let mut tr = Trimmer::default();
        assert!(!tr.observe(100, t));
        assert!(!tr.observe(50, t), "small peaks are ignored");
        assert!(!tr.observe(10_000, t));
        assert!(!tr.observe(5_001, t));
        assert!(tr.observe(5_000, t));
        // New peak from here; a second halving within 5 s waits.
        assert!(!tr.observe(2_000, t + Duration::from_secs(1)));
        assert!(tr.observe(1_000, t + Duration::from_secs(6)));
    }
}
