//! Per-flow snapshots for dashboards and reports: what each flow carries
//! (its metadata and return association) and what went through it.
//!
//! The counters behind them are plain integers bumped on paths that already
//! hold the flow (write, abandonment, delivery to the application); the
//! metadata is kept as a fixed-size prefix so a flow costs no extra heap.

use super::{Priority, Transport};

/// The first bytes of a flow's metadata, inline (no allocation). `TC`
/// metadata (spec 04 §2) is at most 13 bytes, so it always fits whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowMeta {
    len: u8,
    /// Bytes beyond the prefix were cut.
    truncated: bool,
    bytes: [u8; FlowMeta::CAP],
}

impl FlowMeta {
    pub const CAP: usize = 14;

    pub fn new(metadata: &[u8]) -> Self {
        let n = metadata.len().min(Self::CAP);
        let mut bytes = [0u8; Self::CAP];
        bytes[..n].copy_from_slice(&metadata[..n]);
        Self {
            len: n as u8,
            truncated: metadata.len() > Self::CAP,
            bytes,
        }
    }

    /// The kept prefix of the metadata.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(Self::CAP)]
    }

    /// The metadata was longer than [`FlowMeta::CAP`] bytes.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

/// One flow's state, as a cheap snapshot for dashboards and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    pub id: u64,
    /// True for a flow we send, false for one we receive.
    pub sending: bool,
    pub priority: Option<Priority>,
    /// The flow's metadata (its prefix; rejected flows may have none).
    pub metadata: FlowMeta,
    /// The flow of the other direction this one answers (spec 02 §12.4):
    /// sending, one we receive; receiving, one we send.
    pub return_for: Option<u64>,
    /// Sending: next sequence number to assign. Receiving: cumulative ack.
    pub sequence: u64,
    /// Sending: message bytes the application wrote. Receiving: message
    /// bytes delivered to the application.
    pub bytes: u64,
    /// Messages, counted as `bytes` is.
    pub messages: u64,
    /// Sending: messages abandoned (deadline passed, or lost without
    /// retransmission). Receiving: always 0 (the sender decides).
    pub abandoned: u64,
    /// Sending: bytes in flight. Receiving: bytes held for reassembly or unread.
    pub in_flight_or_buffered: usize,
    /// Sending: bytes queued not yet sent. Receiving: receive buffer capacity.
    pub queued_or_capacity: usize,
    /// Sending: the window the peer advertised. Receiving: the window we
    /// advertise. In bytes.
    pub window: usize,
    /// Set when the flow ended with (or was rejected by) an exception code.
    pub exception: Option<u64>,
}

impl Transport {
    /// How many flows exist, (sending, receiving): cheap, no flow touched.
    pub fn flow_counts(&self) -> (usize, usize) {
        (self.send.len(), self.recv.len())
    }

    /// Per-flow snapshots, sending flows first.
    pub fn flow_stats(&self) -> impl Iterator<Item = FlowStats> + '_ {
        let send = self.send.values().map(|f| FlowStats {
            id: f.id,
            sending: true,
            priority: Some(f.priority),
            metadata: f.metadata,
            return_for: f.return_for,
            sequence: f.next_sn,
            bytes: f.bytes_written,
            messages: f.messages_written,
            abandoned: f.abandoned_messages,
            in_flight_or_buffered: f.outstanding,
            queued_or_capacity: f.queued_bytes,
            window: f.rx_buffer_size,
            exception: f.exception,
        });
        let recv = self.recv.values().map(|f| FlowStats {
            id: f.id,
            sending: false,
            priority: None,
            metadata: f.metadata,
            return_for: f.return_for,
            sequence: f.csn(),
            bytes: f.bytes_delivered,
            messages: f.messages_delivered,
            abandoned: 0,
            in_flight_or_buffered: f.buffered + f.app_pending,
            queued_or_capacity: f.capacity,
            window: usize::try_from(f.window_blocks())
                .unwrap_or(usize::MAX)
                .saturating_mul(1024),
            exception: f.rejected,
        });
        send.chain(recv)
    }
}

#[cfg(test)]
mod tests {
    use super::FlowMeta;

    #[test]
    fn metadata_prefix_keeps_tc_whole_and_marks_a_cut() {
        let tc = [0x54, 0x43, 0x04, 0xfa, 0x89, 0x01];
        let m = FlowMeta::new(&tc);
        assert_eq!(m.as_bytes(), &tc);
        assert!(!m.is_truncated());
        let long = [7u8; 40];
        let m = FlowMeta::new(&long);
        assert_eq!(m.as_bytes(), &long[..FlowMeta::CAP]);
        assert!(m.is_truncated());
        assert_eq!(FlowMeta::new(&[]).as_bytes(), &[] as &[u8]);
    }
}
