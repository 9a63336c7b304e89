//! A set of sequence numbers kept as disjoint, non-adjacent inclusive runs.
//!
//! Hostile peers choose the SNs, so the set has a hard cap on its number of
//! runs: an insertion that would create a new isolated run beyond the cap is
//! refused (the caller then behaves as if the chunk was lost, and the sender
//! retransmits). Every operation is O(log runs) plus the runs it merges, and
//! each run is merged away at most once, so no input is quadratic.

use std::collections::BTreeMap;

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

#[derive(Debug, Clone)]
pub struct SeqSet {
    /// start -> end (inclusive). Runs never overlap or touch.
    runs: BTreeMap<u64, u64>,
    max_runs: usize,
}

impl SeqSet {
    pub fn new(max_runs: usize) -> Self {
        Self {
            runs: BTreeMap::new(),
            max_runs: max_runs.max(1),
        }
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn contains(&self, sn: u64) -> bool {
        self.run_containing(sn).is_some()
    }

    /// The run holding `sn`, if any.
    pub fn run_containing(&self, sn: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=sn)
            .next_back()
            .filter(|(_, e)| **e >= sn)
            .map(|(s, e)| (*s, *e))
    }

    /// True if every SN in `[a, b]` is present.
    pub fn contains_range(&self, a: u64, b: u64) -> bool {
        self.run_containing(a).is_some_and(|(_, e)| e >= b)
    }

    /// End of the run that starts at 0 (the cumulative ack), if 0 is present.
    pub fn cumulative(&self) -> Option<u64> {
        self.runs.get(&0).copied()
    }

    pub fn first(&self) -> Option<(u64, u64)> {
        self.runs.first_key_value().map(|(s, e)| (*s, *e))
    }

    pub fn last(&self) -> Option<(u64, u64)> {
        self.runs.last_key_value().map(|(s, e)| (*s, *e))
    }

    /// Runs in ascending order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(s, e)| (*s, *e))
    }

    /// Runs that start after `sn`, ascending.
    pub fn runs_after(&self, sn: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let lo = sn.checked_add(1);
        lo.into_iter()
            .flat_map(move |lo| self.runs.range(lo..).map(|(s, e)| (*s, *e)))
    }

    /// Removes every SN in `[a, b]`. Splitting a run may exceed the cap by
    /// one; callers use this only on sets whose size is bounded elsewhere.
    pub fn remove_range(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        let first = self
            .runs
            .range(..=a)
            .next_back()
            .filter(|(_, e)| **e >= a)
            .map(|(s, _)| *s)
            .unwrap_or(a);
        let hit: Vec<(u64, u64)> = self.runs.range(first..=b).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in hit {
            self.runs.remove(&s);
            if s < a {
                self.runs.insert(s, a - 1);
            }
            if e > b {
                self.runs.insert(b + 1, e);
            }
        }
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
        let mut start = a;
        let mut end = b;
        // A run that starts at or before `a` and reaches `a - 1` or later merges.
        if let Some((&s, &e)) = self.runs.range(..=a).next_back()
            && e.saturating_add(1) >= a
        {
            start = s;
            end = end.max(e);
        }
        // Runs starting inside (start, b + 1] merge too.
        let hi = b.saturating_add(1);
        let swallowed: Vec<(u64, u64)> =
            self.runs.range(start..=hi).map(|(s, e)| (*s, *e)).collect();
        let merges = !swallowed.is_empty();
        if !merges && self.runs.len() >= self.max_runs {
            return Insert::Refused;
        }
        for (s, e) in swallowed {
            self.runs.remove(&s);
            end = end.max(e);
        }
        self.runs.insert(start, end);
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
