//! The flow tables of a session: keyed by flow ID, iterated in ID order
//! (like a BTreeMap, so scheduling stays deterministic), stored as a sorted
//! vector. Sessions hold one to a handful of flows, where a tree node would
//! cost 192 bytes per table; the per-session flow caps bound the vector.

#[derive(Debug, Clone)]
pub struct FlowMap<T> {
    entries: Vec<(u64, T)>,
}

impl<T> Default for FlowMap<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> FlowMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, id: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |e| e.0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.find(*id).is_ok()
    }

    pub fn get(&self, id: &u64) -> Option<&T> {
        self.find(*id).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut T> {
        self.find(*id).ok().map(|i| &mut self.entries[i].1)
    }

    /// Inserts or replaces; returns the replaced value.
    pub fn insert(&mut self, id: u64, v: T) -> Option<T> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            Err(i) => {
                self.entries.insert(i, (id, v));
                None
            }
        }
    }

    pub fn remove(&mut self, id: &u64) -> Option<T> {
        let i = self.find(*id).ok()?;
        let v = self.entries.remove(i).1;
        if self.entries.is_empty() {
            // Idle sessions should not keep a grown table.
            self.entries = Vec::new();
        }
        Some(v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.entries.iter().map(|e| &e.0)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().map(|e| &e.1)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.entries.iter_mut().map(|e| &mut e.1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &T)> + '_ {
        self.entries.iter().map(|e| (&e.0, &e.1))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut T) -> bool) {
        self.entries.retain_mut(|e| keep(&e.0, &mut e.1));
    }
}

impl<'a, T> IntoIterator for &'a FlowMap<T> {
    type Item = (&'a u64, &'a T);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (u64, T)>, fn(&'a (u64, T)) -> (&'a u64, &'a T)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|e| (&e.0, &e.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut m = FlowMap::new();
        assert!(m.insert(5, "e").is_none());
        assert!(m.insert(1, "a").is_none());
        assert!(m.insert(3, "c").is_none());
        assert_eq!(m.insert(3, "C"), Some("c"));
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(m.get(&3), Some(&"C"));
        assert!(m.contains_key(&5) && !m.contains_key(&4));
        assert_eq!(m.remove(&1), Some("a"));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.len(), 2);
        m.retain(|k, _| *k > 3);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["e"]);
    }
}
