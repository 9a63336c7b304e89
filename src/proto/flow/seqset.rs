//! A set of sequence numbers kept as disjoint, non-adjacent inclusive runs.
//!
//! Hostile peers choose the SNs, so the set has a hard cap on its number of
//! runs: an insertion that would create a new isolated run beyond the cap is
//! refused (the caller then behaves as if the chunk was lost, and the sender
//! retransmits). Every operation is O(log runs) plus the runs it merges, and
//! each run is merged away at most once, so no input is quadratic.

/// Outcome of inserting one SN or run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// At least one new SN was added.
    Added,
    /// Every SN was already present.
    Duplicate,
    /// Refused: it would have needed a run beyond the cap.
    Refused,
}

/// Runs live in a sorted vector: a flow almost always has one or two runs,
/// so this costs a few dozen bytes where a tree costs a 192-byte node, and
/// the common in-order insert extends the last run in place without
/// allocating. The cap bounds the vector, so shifting is bounded too.
#[derive(Debug, Clone)]
pub struct SeqSet {
    /// (start, end) inclusive, ascending; runs never overlap or touch.
    runs: Vec<(u64, u64)>,
    max_runs: usize,
}

impl SeqSet {
    pub fn new(max_runs: usize) -> Self {
        Self {
            runs: Vec::new(),
            max_runs: max_runs.max(1),
        }
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Gives back memory after bursts (the set keeps what it holds).
    pub fn shrink(&mut self) {
        self.runs.shrink_to_fit();
    }

    pub fn contains(&self, sn: u64) -> bool {
        self.run_containing(sn).is_some()
    }

    /// Index of the last run starting at or before `sn`.
    fn index_at_or_before(&self, sn: u64) -> Option<usize> {
        self.runs.partition_point(|r| r.0 <= sn).checked_sub(1)
    }

    /// The run holding `sn`, if any.
    pub fn run_containing(&self, sn: u64) -> Option<(u64, u64)> {
        let i = self.index_at_or_before(sn)?;
        let r = self.runs[i];
        (r.1 >= sn).then_some(r)
    }

    /// True if every SN in `[a, b]` is present.
    pub fn contains_range(&self, a: u64, b: u64) -> bool {
        self.run_containing(a).is_some_and(|(_, e)| e >= b)
    }

    /// End of the run that starts at 0 (the cumulative ack), if 0 is present.
    pub fn cumulative(&self) -> Option<u64> {
        self.runs.first().filter(|r| r.0 == 0).map(|r| r.1)
    }

    pub fn first(&self) -> Option<(u64, u64)> {
        self.runs.first().copied()
    }

    pub fn last(&self) -> Option<(u64, u64)> {
        self.runs.last().copied()
    }

    /// Runs in ascending order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().copied()
    }

    /// Runs that start after `sn`, ascending.
    pub fn runs_after(&self, sn: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let from = match sn.checked_add(1) {
            Some(lo) => self.runs.partition_point(|r| r.0 < lo),
            None => self.runs.len(),
        };
        self.runs[from..].iter().copied()
    }

    /// Removes every SN in `[a, b]`. Splitting a run may exceed the cap by
    /// one; callers use this only on sets whose size is bounded elsewhere.
    pub fn remove_range(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        // Runs i..j overlap [a, b].
        let i = self.runs.partition_point(|r| r.1 < a);
        let j = self.runs.partition_point(|r| r.0 <= b);
        if i >= j {
            return;
        }
        let (first_start, _) = self.runs[i];
        let (_, last_end) = self.runs[j - 1];
        let left = (first_start < a).then(|| (first_start, a - 1));
        let right = (last_end > b).then(|| (b + 1, last_end));
        self.runs.splice(i..j, left.into_iter().chain(right));
    }

    pub fn insert(&mut self, sn: u64) -> Insert {
        self.insert_range(sn, sn)
    }

    /// Adds every SN in `[a, b]` (nothing if `a > b`).
    pub fn insert_range(&mut self, a: u64, b: u64) -> Insert {
        if a > b {
            return Insert::Duplicate;
        }
        if self.contains_range(a, b) {
            return Insert::Duplicate;
        }
        // Runs i..j overlap or touch [a, b] and merge with it.
        let i = self.runs.partition_point(|r| r.1.saturating_add(1) < a);
        let j = self.runs.partition_point(|r| r.0 <= b.saturating_add(1));
        if i >= j {
            if self.runs.len() >= self.max_runs {
                return Insert::Refused;
            }
            self.runs.insert(i, (a, b));
            return Insert::Added;
        }
        let start = a.min(self.runs[i].0);
        let end = b.max(self.runs[j - 1].1);
        self.runs[i] = (start, end);
        self.runs.drain(i + 1..j);
        Insert::Added
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_and_cumulative() {
        let mut s = SeqSet::new(16);
        assert_eq!(s.insert_range(0, 0), Insert::Added);
        assert_eq!(s.insert(2), Insert::Added);
        assert_eq!(s.insert(4), Insert::Added);
        assert_eq!(s.run_count(), 3);
        assert_eq!(s.cumulative(), Some(0));
        assert_eq!(s.insert(1), Insert::Added);
        assert_eq!(s.cumulative(), Some(2));
        assert_eq!(s.insert(2), Insert::Duplicate);
        assert_eq!(s.insert_range(3, 10), Insert::Added);
        assert_eq!(s.runs().collect::<Vec<_>>(), [(0, 10)]);
        assert_eq!(s.insert(u64::MAX), Insert::Added);
        assert_eq!(s.runs_after(10).collect::<Vec<_>>(), [(u64::MAX, u64::MAX)]);
        assert_eq!(s.runs_after(u64::MAX).count(), 0);
    }

    #[test]
    fn cap_refuses_new_isolated_runs_only() {
        let mut s = SeqSet::new(2);
        s.insert(0);
        s.insert(10);
        assert_eq!(s.insert(20), Insert::Refused);
        assert!(!s.contains(20));
        // Extending or bridging existing runs is still fine.
        assert_eq!(s.insert(11), Insert::Added);
        assert_eq!(s.insert_range(1, 9), Insert::Added);
        assert_eq!(s.runs().collect::<Vec<_>>(), [(0, 11)]);
        assert_eq!(s.insert(20), Insert::Added);
    }

    #[test]
    fn remove_range_splits() {
        let mut s = SeqSet::new(8);
        s.insert_range(0, 10);
        s.insert_range(20, 30);
        s.remove_range(5, 22);
        assert_eq!(s.runs().collect::<Vec<_>>(), [(0, 4), (23, 30)]);
        s.remove_range(0, 0);
        s.remove_range(30, 40);
        assert_eq!(s.runs().collect::<Vec<_>>(), [(1, 4), (23, 29)]);
    }

    #[test]
    fn million_gaps_stay_bounded() {
        let mut s = SeqSet::new(1024);
        for i in 0..1_000_000u64 {
            s.insert(i * 2);
        }
        assert_eq!(s.run_count(), 1024);
        // One range closes everything.
        s.insert_range(0, 2_000_000);
        assert_eq!(s.run_count(), 1);
    }

    proptest! {
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u64..200, 0u64..8), 0..100), cap in 1usize..12) {
            let mut s = SeqSet::new(cap);
            let mut model = BTreeSet::new();
            for (a, len) in ops {
                let b = a + len;
                let before = s.clone();
                let r = s.insert_range(a, b);
                match r {
                    Insert::Refused => {
                        prop_assert_eq!(s.runs().collect::<Vec<_>>(), before.runs().collect::<Vec<_>>());
                    }
                    Insert::Duplicate => prop_assert!((a..=b).all(|x| model.contains(&x))),
                    Insert::Added => {
                        prop_assert!((a..=b).any(|x| !model.contains(&x)));
                        model.extend(a..=b);
                    }
                }
                // Invariants: disjoint, non-adjacent, ascending, within cap.
                let runs: Vec<_> = s.runs().collect();
                prop_assert!(runs.len() <= cap);
                for w in runs.windows(2) {
                    prop_assert!(w[0].1 + 1 < w[1].0);
                }
                for &(x, y) in &runs {
                    prop_assert!(x <= y);
                }
                let flat: BTreeSet<u64> = runs.iter().flat_map(|&(x, y)| x..=y).collect();
                prop_assert_eq!(&flat, &model);
            }
        }
    }
}
