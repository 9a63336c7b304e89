//! The bytes a sending flow queues for one fragment: a short head held
//! inline and a slice of a shared, reference-counted message body.
//!
//! A relay writes one publisher message into N subscribers' flows; with the
//! body shared, that is one allocation whatever N is, and each subscriber's
//! own header (its rebased timestamp) rides in the head. A retransmission
//! reads the same slice again, and acknowledging or abandoning a fragment
//! only drops its reference.

use bytes::Bytes;

/// Longest head a message carries inline (the 5-byte TC message header of
/// spec 04 §4 fits with room to spare); a longer one is copied into the body.
pub const MAX_HEAD: usize = 15;

/// One fragment's bytes: `head` then `body`.
#[derive(Clone, Default)]
pub struct FragmentData {
    head_len: u8,
    head: [u8; MAX_HEAD],
    body: Bytes,
}

impl std::fmt::Debug for FragmentData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentData")
            .field("head", &self.head().len())
            .field("body", &self.body.len())
            .finish()
    }
}

impl FragmentData {
    /// Bytes `lo..hi` of the message `head ‖ body` (`head` at most
    /// [`MAX_HEAD`] bytes, `lo <= hi <= head.len() + body.len()`).
    pub fn cut(head: &[u8], body: &Bytes, lo: usize, hi: usize) -> Self {
        debug_assert!(head.len() <= MAX_HEAD && lo <= hi && hi <= head.len() + body.len());
        let h = &head[lo.min(head.len())..hi.min(head.len())];
        let mut inline = [0u8; MAX_HEAD];
        inline[..h.len()].copy_from_slice(h);
        let (blo, bhi) = (lo.saturating_sub(head.len()), hi.saturating_sub(head.len()));
        Self {
            head_len: h.len() as u8,
            head: inline,
            // An empty slice holds no reference.
            body: if blo == bhi {
                Bytes::new()
            } else {
                body.slice(blo..bhi)
            },
        }
    }

    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// Lets go of the bytes (acknowledged or abandoned).
    pub fn clear(&mut self) {
        self.head_len = 0;
        self.body = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_span_the_head_and_share_the_body() {
        let body = Bytes::from(b"0123456789".to_vec());
        let head = b"HEAD";
        let whole: Vec<u8> = head.iter().chain(body.iter()).copied().collect();
        // Every cut of every size reads the same bytes as the whole message.
        for size in 1..=whole.len() {
            let mut read = Vec::new();
            for lo in (0..whole.len()).step_by(size) {
                let hi = (lo + size).min(whole.len());
                let f = FragmentData::cut(head, &body, lo, hi);
                assert_eq!(f.len(), hi - lo);
                read.extend_from_slice(f.head());
                read.extend_from_slice(f.body());
            }
            assert_eq!(read, whole, "fragments of {size}");
        }
        let mut f = FragmentData::cut(head, &body, 2, 9);
        assert_eq!((f.head(), f.body()), (&b"AD"[..], &b"01234"[..]));
        assert_eq!(
            f.body().as_ptr(),
            body.as_ptr(),
            "the body is a slice, not a copy"
        );
        f.clear();
        assert_eq!(f.len(), 0);
        assert!(FragmentData::cut(head, &body, 0, 4).body().is_empty());
    }
}
