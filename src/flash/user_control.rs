//! User Control messages (type 4, spec 04 §6): stream events, the RTMFP
//! additions Flow Synchronization (§6.2) and Set Keepalive Timers (§6.3),
//! and the receiver-side state those two need.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

/// Event types (spec 04 §6).
pub mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
    /// RFC 7425 §5.2.
    pub const FLOW_SYNC: u16 = 0x22;
    /// RFC 7425 §5.3.4.
    pub const SET_KEEPALIVE: u16 = 0x29;
}

/// Floor for both keepalive periods (spec 04 §6.3).
pub const MIN_KEEPALIVE_MS: u32 = 5000;

/// Why a user control payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UserControlError {
    #[error("user control event {event:?} needs {needed} payload bytes, got {got}")]
    Truncated {
        event: Option<u16>,
        needed: usize,
        got: usize,
    },
}

/// One user control event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        ms: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    FlowSync {
        sync_id: u32,
        count: u32,
    },
    SetKeepalive {
        server_ms: u32,
        peer_ms: u32,
    },
    /// Any other event, data kept verbatim.
    Unknown {
        event: u16,
        data: Vec<u8>,
    },
}

impl UserControl {
    /// Parses the payload after the 5-byte message header. Bytes after an
    /// event's fields are ignored (RTMP servers append padding to some).
    pub fn parse(p: &[u8]) -> Result<Self, UserControlError> {
        let Some((ev, data)) = p.split_first_chunk::<2>() else {
            return Err(UserControlError::Truncated {
                event: None,
                needed: 2,
                got: p.len(),
            });
        };
        let event = u16::from_be_bytes(*ev);
        let word = |i: usize| -> Result<u32, UserControlError> {
            data.get(4 * i..4 * i + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or(UserControlError::Truncated {
                    event: Some(event),
                    needed: 4 * i + 4,
                    got: data.len(),
                })
        };
        Ok(match event {
            event::STREAM_BEGIN => UserControl::StreamBegin(word(0)?),
            event::STREAM_EOF => UserControl::StreamEof(word(0)?),
            event::STREAM_DRY => UserControl::StreamDry(word(0)?),
            event::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
                ms: word(1)?,
                stream_id: word(0)?,
            },
            event::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(word(0)?),
            event::PING_REQUEST => UserControl::PingRequest(word(0)?),
            event::PING_RESPONSE => UserControl::PingResponse(word(0)?),
            event::FLOW_SYNC => UserControl::FlowSync {
                count: word(1)?,
                sync_id: word(0)?,
            },
            event::SET_KEEPALIVE => UserControl::SetKeepalive {
                peer_ms: word(1)?,
                server_ms: word(0)?,
            },
            event => UserControl::Unknown {
                event,
                data: data.to_vec(),
            },
        })
    }

    pub fn event(&self) -> u16 {
        match self {
            UserControl::StreamBegin(_) => event::STREAM_BEGIN,
            UserControl::StreamEof(_) => event::STREAM_EOF,
            UserControl::StreamDry(_) => event::STREAM_DRY,
            UserControl::SetBufferLength { .. } => event::SET_BUFFER_LENGTH,
            UserControl::StreamIsRecorded(_) => event::STREAM_IS_RECORDED,
            UserControl::PingRequest(_) => event::PING_REQUEST,
            UserControl::PingResponse(_) => event::PING_RESPONSE,
            UserControl::FlowSync { .. } => event::FLOW_SYNC,
            UserControl::SetKeepalive { .. } => event::SET_KEEPALIVE,
            UserControl::Unknown { event, .. } => *event,
        }
    }

    /// Appends the payload (event type and data, no message header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.event().to_be_bytes());
        let words: &[u32] = match self {
            UserControl::StreamBegin(s)
            | UserControl::StreamEof(s)
            | UserControl::StreamDry(s)
            | UserControl::StreamIsRecorded(s)
            | UserControl::PingRequest(s)
            | UserControl::PingResponse(s) => &[*s],
            UserControl::SetBufferLength { stream_id, ms } => &[*stream_id, *ms],
            UserControl::FlowSync { sync_id, count } => &[*sync_id, *count],
            UserControl::SetKeepalive { server_ms, peer_ms } => &[*server_ms, *peer_ms],
            UserControl::Unknown { data, .. } => {
                out.extend_from_slice(data);
                &[]
            }
        };
        for w in words {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }

    /// For Set Keepalive Timers: the periods to apply, floored (spec 04 §6.3).
    pub fn keepalive_periods(&self) -> Option<KeepalivePeriods> {
        match self {
            UserControl::SetKeepalive { server_ms, peer_ms } => {
                Some(KeepalivePeriods::from_ms(*server_ms, *peer_ms))
            }
            _ => None,
        }
    }

    /// The whole type 4 message with timestamp 0.
    pub fn to_message(&self) -> Vec<u8> {
        let mut out = vec![super::message::msg_type::USER_CONTROL, 0, 0, 0, 0];
        self.encode(&mut out);
        out
    }
}

/// Keepalive periods a client should apply after Set Keepalive Timers
/// (spec 04 §6.3): each value floored at 5 s. (The reference floors the peer
/// value with the server value by mistake; this does not.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepalivePeriods {
    /// Keepalive of the session to the server.
    pub server: Duration,
    /// Default keepalive of P2P sessions.
    pub peer: Duration,
}

impl KeepalivePeriods {
    pub fn from_ms(server_ms: u32, peer_ms: u32) -> Self {
        Self {
            server: Duration::from_millis(u64::from(server_ms.max(MIN_KEEPALIVE_MS))),
            peer: Duration::from_millis(u64::from(peer_ms.max(MIN_KEEPALIVE_MS))),
        }
    }
}

/// What the flow that delivered a sync message should do next (spec 04 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Barrier not complete: stop delivering this flow's later messages.
    Hold,
    /// The flow is in network order and is never held; nothing to do for it.
    NotHeld,
    /// Barrier complete: return these flows (held ones, in arrival order;
    /// the arriving flow is not listed) to sequenced delivery.
    Release(Vec<u64>),
}

/// Why a sync message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FlowSyncError {
    #[error("more than {0} sync barriers open at once")]
    TooManyBarriers(usize),
    #[error("sync {sync_id} count {count} is above the limit of {limit} flows")]
    CountTooLarge {
        sync_id: u32,
        count: u32,
        limit: u32,
    },
}

#[derive(Debug, Clone, Default)]
struct Barrier {
    count: u32,
    /// Flows that arrived (deduplicated), with whether each is held.
    arrived: Vec<(u64, bool)>,
}

/// Receiver side of Flow Synchronization, one per connection (spec 04 §6.2,
/// reference `FlowSyncManager`). Flows are named by the caller's flow IDs.
/// The number of open barriers and the flows per barrier are bounded so a
/// peer cannot grow this without limit; the reference never times barriers
/// out, and neither does this (the caller may [`FlowSync::forget_flow`]).
#[derive(Debug, Clone)]
pub struct FlowSync {
    barriers: BTreeMap<u32, Barrier>,
    max_barriers: usize,
    max_count: u32,
}

impl Default for FlowSync {
    fn default() -> Self {
        // A NetStream has a handful of flows; connections rarely have more
        // than a few dozen streams.
        Self::new(256, 64)
    }
}

impl FlowSync {
    pub fn new(max_barriers: usize, max_count: u32) -> Self {
        Self {
            barriers: BTreeMap::new(),
            max_barriers,
            max_count,
        }
    }

    /// A flow delivered `FlowSync { sync_id, count }`. `network_order` says
    /// whether that flow is delivered in network order (never held).
    pub fn on_sync(
        &mut self,
        flow: u64,
        sync_id: u32,
        count: u32,
        network_order: bool,
    ) -> Result<SyncOutcome, FlowSyncError> {
        if count > self.max_count {
            return Err(FlowSyncError::CountTooLarge {
                sync_id,
                count,
                limit: self.max_count,
            });
        }
        if !self.barriers.contains_key(&sync_id) && self.barriers.len() >= self.max_barriers {
            return Err(FlowSyncError::TooManyBarriers(self.max_barriers));
        }
        let b = self.barriers.entry(sync_id).or_default();
        // The first message fixes the count; later disagreement is ignored
        // like the reference does.
        if b.arrived.is_empty() {
            b.count = count;
        }
        if !b.arrived.iter().any(|(f, _)| *f == flow) {
            b.arrived.push((flow, !network_order));
        }
        if (b.arrived.len() as u64) < u64::from(b.count) {
            return Ok(if network_order {
                SyncOutcome::NotHeld
            } else {
                SyncOutcome::Hold
            });
        }
        // Invariant: the entry was inserted above and nothing removed it since.
        let done = self.barriers.remove(&sync_id).unwrap_or_default();
        Ok(SyncOutcome::Release(
            done.arrived
                .into_iter()
                .filter(|&(f, held)| held && f != flow)
                .map(|(f, _)| f)
                .collect(),
        ))
    }

    /// A flow ended: drop it from every barrier (empty barriers go away).
    pub fn forget_flow(&mut self, flow: u64) {
        self.barriers.retain(|_, b| {
            b.arrived.retain(|(f, _)| *f != flow);
            !b.arrived.is_empty()
        });
    }

    pub fn open_barriers(&self) -> usize {
        self.barriers.len()
    }
}

/// Sender side: sync IDs count up per connection (spec 04 §6.2).
#[derive(Debug, Clone, Default)]
pub struct SyncIds {
    next: u32,
}

impl SyncIds {
    /// The message to write into each of `count` flows.
    pub fn next_sync(&mut self, count: u32) -> UserControl {
        self.next = self.next.wrapping_add(1);
        UserControl::FlowSync {
            sync_id: self.next,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(s).unwrap()
    }

    #[test]
    fn spec_6_encodings() {
        let cases = [
            (UserControl::StreamBegin(1), "04 00000000 0000 00000001"),
            (
                UserControl::SetKeepalive {
                    server_ms: 15000,
                    peer_ms: 10000,
                },
                "04 00000000 0029 00003a98 00002710",
            ),
            (
                UserControl::FlowSync {
                    sync_id: 7,
                    count: 2,
                },
                "04 00000000 0022 00000007 00000002",
            ),
            (
                UserControl::SetBufferLength {
                    stream_id: 1,
                    ms: 3000,
                },
                "04 00000000 0003 00000001 00000bb8",
            ),
            (UserControl::StreamEof(2), "04 00000000 0001 00000002"),
            (
                UserControl::Unknown {
                    event: 0x1f,
                    data: vec![1, 2],
                },
                "04 00000000 001f 0102",
            ),
        ];
        for (uc, h) in cases {
            let b = hex(h);
            assert_eq!(uc.to_message(), b, "{uc:?}");
            assert_eq!(UserControl::parse(&b[5..]).unwrap(), uc);
        }
    }

    #[test]
    fn truncated_events() {
        assert_eq!(
            UserControl::parse(&[0]),
            Err(UserControlError::Truncated {
                event: None,
                needed: 2,
                got: 1
            })
        );
        assert_eq!(
            UserControl::parse(&hex("0029 00003a98 0000")),
            Err(UserControlError::Truncated {
                event: Some(0x29),
                needed: 8,
                got: 6
            })
        );
        let b = hex("0022 00000007 00000002");
        for n in 0..b.len() {
            assert!(UserControl::parse(&b[..n]).is_err(), "prefix {n}");
        }
        // Trailing bytes are tolerated.
        assert_eq!(
            UserControl::parse(&hex("0000 00000001 ff")).unwrap(),
            UserControl::StreamBegin(1)
        );
    }

    #[test]
    fn keepalive_floor_is_per_value() {
        let k = KeepalivePeriods::from_ms(15000, 1000);
        assert_eq!(k.server, Duration::from_secs(15));
        assert_eq!(k.peer, Duration::from_secs(5));
        assert_eq!(
            KeepalivePeriods::from_ms(0, 10000).peer,
            Duration::from_secs(10)
        );
        assert_eq!(
            UserControl::SetKeepalive {
                server_ms: 4000,
                peer_ms: 10000
            }
            .keepalive_periods(),
            Some(KeepalivePeriods {
                server: Duration::from_secs(5),
                peer: Duration::from_secs(10)
            })
        );
        assert_eq!(UserControl::StreamBegin(1).keepalive_periods(), None);
    }

    #[test]
    fn flow_sync_holds_until_count_then_releases() {
        let mut fs = FlowSync::default();
        assert_eq!(fs.on_sync(5, 7, 3, false), Ok(SyncOutcome::Hold));
        assert_eq!(
            fs.on_sync(5, 7, 3, false),
            Ok(SyncOutcome::Hold),
            "duplicate does not count"
        );
        assert_eq!(fs.on_sync(6, 7, 3, true), Ok(SyncOutcome::NotHeld));
        assert_eq!(fs.on_sync(9, 8, 2, false), Ok(SyncOutcome::Hold));
        assert_eq!(fs.open_barriers(), 2);
        assert_eq!(
            fs.on_sync(4, 7, 3, false),
            Ok(SyncOutcome::Release(vec![5]))
        );
        assert_eq!(fs.open_barriers(), 1);
        fs.forget_flow(9);
        assert_eq!(fs.open_barriers(), 0);
        // count 1 (or 0) releases at once.
        assert_eq!(fs.on_sync(1, 9, 1, false), Ok(SyncOutcome::Release(vec![])));
        assert_eq!(
            fs.on_sync(1, 10, 0, false),
            Ok(SyncOutcome::Release(vec![]))
        );
    }

    #[test]
    fn flow_sync_is_bounded() {
        let mut fs = FlowSync::new(2, 4);
        assert!(fs.on_sync(1, 1, 2, false).is_ok());
        assert!(fs.on_sync(1, 2, 2, false).is_ok());
        assert_eq!(
            fs.on_sync(1, 3, 2, false),
            Err(FlowSyncError::TooManyBarriers(2))
        );
        assert_eq!(
            fs.on_sync(1, 1, 5, false),
            Err(FlowSyncError::CountTooLarge {
                sync_id: 1,
                count: 5,
                limit: 4
            })
        );
        assert_eq!(
            fs.on_sync(2, 1, 2, false),
            Ok(SyncOutcome::Release(vec![1]))
        );
    }

    #[test]
    fn sync_ids_count_up() {
        let mut ids = SyncIds::default();
        assert_eq!(
            ids.next_sync(3),
            UserControl::FlowSync {
                sync_id: 1,
                count: 3
            }
        );
        assert_eq!(
            ids.next_sync(2),
            UserControl::FlowSync {
                sync_id: 2,
                count: 2
            }
        );
    }
}
