//! Counters every layer updates, read as cheap `Copy` snapshots by the
//! dashboard and `--json` reporting.

/// Why an incoming datagram (or a chunk in it) was dropped. Every drop is
/// counted by reason so a misbehaving sender is visible without logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than the smallest possible RTMFP datagram.
    TooShort,
    /// Scrambled session ID names no session.
    UnknownSession,
    /// Failed decryption, checksum, HMAC or sequence-number checks.
    Decrypt,
    /// Plain packet header malformed (e.g. mode 0).
    Header,
    /// Packet mode not acceptable for this session state (e.g. reflected).
    Mode,
    /// A chunk that failed to decode.
    MalformedChunk,
    /// A chunk not allowed in the state it arrived in.
    WrongState,
    /// IIKeying with a bad or expired cookie.
    BadCookie,
    /// Certificate, EPD, key component or DH public value rejected.
    BadKeying,
    /// A limit was reached (sessions, queued packets, early packets).
    Limit,
    /// A startup chunk that matched no opening session.
    Unmatched,
    /// An answer withheld: more than 3× what its unverified destination
    /// sent, a second answer to one datagram, or over a byte budget.
    Amplification,
}

impl DropReason {
    pub const COUNT: usize = 12;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::TooShort,
        DropReason::UnknownSession,
        DropReason::Decrypt,
        DropReason::Header,
        DropReason::Mode,
        DropReason::MalformedChunk,
        DropReason::WrongState,
        DropReason::BadCookie,
        DropReason::BadKeying,
        DropReason::Limit,
        DropReason::Unmatched,
        DropReason::Amplification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::UnknownSession => "unknown_session",
            DropReason::Decrypt => "decrypt",
            DropReason::Header => "header",
            DropReason::Mode => "mode",
            DropReason::MalformedChunk => "malformed_chunk",
            DropReason::WrongState => "wrong_state",
            DropReason::BadCookie => "bad_cookie",
            DropReason::BadKeying => "bad_keying",
            DropReason::Limit => "limit",
            DropReason::Unmatched => "unmatched",
            DropReason::Amplification => "amplification",
        }
    }
}

/// Endpoint-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub sessions_opened: u64,
    pub sessions_closed: u64,
    pub sessions_failed: u64,
    pub sessions_current: u64,
    pub handshakes_answered: u64,
    pub cookie_changes: u64,
    /// Open sessions probed because another certificate handshook from
    /// their address (a reused port, see `Endpoint::check_stale`).
    pub stale_checks: u64,
    pub redirects_sent: u64,
    pub forwarded_hellos: u64,
    /// IIKeying packets we resent because no RIKeying came (initiator):
    /// the far end answers hellos but not keying (throttled, refusing).
    pub keying_resends: u64,
    /// Bytes sent to addresses that had not proven they receive (RHello,
    /// Cookie Change, Redirect).
    pub unverified_tx_bytes: u64,
    /// Half-open responder sessions: keyed, no packet from the initiator yet.
    pub half_open: u64,
    /// Half-open sessions that expired without a packet from the initiator.
    pub half_open_expired: u64,
}

impl EndpointStats {
    pub fn drop(&mut self, reason: DropReason) {
        tracing::trace!(reason = reason.name(), "datagram dropped");
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Per-session counters kept by the session itself (the flow layer keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub keepalives_sent: u64,
    pub drops: u64,
}
