//! `TC` flow metadata (spec 04 §2) and the flow topology rules built on it
//! (spec 04 §3): which incoming flows a TC endpoint accepts, and which stream
//! IDs a server hands out.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::proto::wire::vlu;

/// ASCII `TC` (spec 04 §2).
pub const SIGNATURE: [u8; 2] = *b"TC";
/// Options byte: stream ID present (spec 04 §2); the reference requires it.
pub const OPT_SID: u8 = 0x04;
/// Options byte: receive intent, 2 bits (spec 04 §2).
pub const OPT_RXI_MASK: u8 = 0x03;
/// Options byte: bits that must be zero (spec 04 §2).
pub const OPT_RESERVED_MASK: u8 = 0xf8;
/// Stream IDs Flash/librtmfp use for direct P2P NetStreams are 2000000 + n
/// (spec 04 §8.1, 06 "Direct P2P NetStreams").
pub const P2P_STREAM_BASE: u64 = 2_000_000;
/// The stream ID librtmfp (imitating Flash) uses for its first P2P play.
pub const P2P_FIRST_STREAM: u64 = P2P_STREAM_BASE + 1;

/// How the receiver should deliver the flow's messages (spec 04 §2, RXI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveIntent {
    /// RXI 0: original order.
    Sequence,
    /// RXI 1: network arrival order.
    Network,
    /// RXI 2 or 3, unassigned. The reference reads only bit 0, so 2 acts as
    /// Sequence and 3 as Network (see [`ReceiveIntent::delivers_in_network_order`]).
    Unassigned(u8),
}

impl ReceiveIntent {
    pub fn from_bits(bits: u8) -> Self {
        match bits & OPT_RXI_MASK {
            0 => ReceiveIntent::Sequence,
            1 => ReceiveIntent::Network,
            b => ReceiveIntent::Unassigned(b),
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            ReceiveIntent::Sequence => 0,
            ReceiveIntent::Network => 1,
            ReceiveIntent::Unassigned(b) => b & OPT_RXI_MASK,
        }
    }

    /// Delivery order to apply, as the reference does: bit 0 only (spec 04 §2).
    pub fn delivers_in_network_order(self) -> bool {
        self.bits() & 1 == 1
    }
}

/// Why flow metadata is not usable TC metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("metadata does not start with \"TC\"")]
    NotTc,
    #[error("metadata ends before the options byte or stream ID")]
    Truncated,
    #[error("TC metadata without a stream ID (SID flag clear)")]
    NoStreamId,
    #[error("stream ID is not a valid VLU")]
    BadStreamId,
    #[error("bytes after the stream ID")]
    TrailingBytes,
}

/// Parsed `TC` metadata of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcMetadata {
    pub stream_id: u64,
    pub intent: ReceiveIntent,
}

impl TcMetadata {
    /// Ordered metadata for `stream_id` (RXI 0).
    pub fn new(stream_id: u64) -> Self {
        Self {
            stream_id,
            intent: ReceiveIntent::Sequence,
        }
    }

    pub fn with_intent(stream_id: u64, intent: ReceiveIntent) -> Self {
        Self { stream_id, intent }
    }

    /// Parses the metadata option value (without the option's length and
    /// type). Reserved option bits are ignored, as the reference does;
    /// trailing bytes are refused so that two byte strings never mean the
    /// same flow.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetadataError> {
        let rest = match bytes {
            [b'T', b'C', rest @ ..] => rest,
            _ if bytes.len() < 2 && SIGNATURE.starts_with(bytes) => {
                return Err(MetadataError::Truncated);
            }
            _ => return Err(MetadataError::NotTc),
        };
        let (&opts, rest) = rest.split_first().ok_or(MetadataError::Truncated)?;
        if opts & OPT_SID == 0 {
            return Err(MetadataError::NoStreamId);
        }
        let (stream_id, used) = vlu::decode(rest).map_err(|e| match e {
            crate::proto::wire::WireError::Truncated => MetadataError::Truncated,
            _ => MetadataError::BadStreamId,
        })?;
        if used != rest.len() {
            return Err(MetadataError::TrailingBytes);
        }
        Ok(Self {
            stream_id,
            intent: ReceiveIntent::from_bits(opts),
        })
    }

    /// `54 43 <opts> <vlu stream ID>`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = [0u8; vlu::MAX_LEN];
        let n = vlu::encode(self.stream_id, &mut v);
        let mut out = Vec::with_capacity(3 + n);
        out.extend_from_slice(&SIGNATURE);
        out.push(OPT_SID | self.intent.bits());
        out.extend_from_slice(&v[..n]);
        out
    }

    pub fn is_control(&self) -> bool {
        self.stream_id == 0
    }
}

/// Whether metadata starts with the `TC` signature at all (other signatures,
/// e.g. NetGroup's `GR`/`GC`, belong to other layers).
pub fn is_tc(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// RTMFP priorities the reference uses for TC flows (spec 04 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcPriority {
    /// 4: video.
    Priority = 4,
    /// 5: control, data and audio.
    Immediate = 5,
}

/// Priority for a flow that carries messages of type `msg_type` (spec 04 §3).
pub fn priority_for(msg_type: u8) -> TcPriority {
    if msg_type == super::message::msg_type::VIDEO {
        TcPriority::Priority
    } else {
        TcPriority::Immediate
    }
}

/// Which side of a TC connection we are (spec 04 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    /// The publisher side of a direct P2P NetStream (spec 04 §8.2): it
    /// accepts unassociated flows for any stream ID (the subscriber picks it).
    P2pPublisher,
    /// The subscriber side of a direct P2P NetStream (spec 04 §8.1): it opens
    /// an unassociated flow and accepts the publisher's flows associated
    /// with it.
    P2pSubscriber,
}

/// What a flow we open should be associated with (spec 04 §3, §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociateWith {
    /// No association: the client's first control flow, or a P2P
    /// subscriber's flow to the publisher.
    Nothing,
    /// The control flow we receive on this connection (flow 2 for a
    /// client, flow 1 for a server).
    ReceivedControlFlow,
    /// The subscriber's flow for this stream (P2P publisher's return flows).
    ReceivedStreamFlow,
}

/// The association for a new sending flow of `stream_id` (spec 04 §3, §8).
pub fn association_for_new_flow(role: Role, stream_id: u64) -> AssociateWith {
    match role {
        Role::Client if stream_id == 0 => AssociateWith::Nothing,
        Role::Client | Role::Server => AssociateWith::ReceivedControlFlow,
        Role::P2pPublisher => AssociateWith::ReceivedStreamFlow,
        Role::P2pSubscriber => AssociateWith::Nothing,
    }
}

/// The association an incoming flow declares (its Return Flow Association).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Association {
    /// No association option.
    None,
    /// Associated with one of our sending flows of this connection.
    OurFlow,
    /// Associated with a flow we do not have (or of another connection).
    Unknown,
}

/// What to do with an incoming flow (spec 04 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowDecision {
    /// A client's unassociated control flow: a new NetConnection. The server
    /// opens its own control flow in return.
    NewConnection,
    /// A subscriber's unassociated flow to a P2P publisher, for this stream.
    NewP2pStream {
        stream_id: u64,
        intent: ReceiveIntent,
    },
    /// A flow of an existing connection.
    Accept {
        stream_id: u64,
        intent: ReceiveIntent,
    },
}

/// Why an incoming flow must be rejected (Flow Exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FlowRejection {
    #[error("bad metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("unassociated flow that does not open a connection")]
    Unassociated,
    #[error("associated with a flow that is not ours")]
    UnknownAssociation,
    #[error("stream {0} was not created (or was deleted)")]
    UnknownStream(u64),
}

/// Applies spec 04 §3 to one incoming flow. `stream_exists` answers whether
/// a stream ID (other than 0) is currently allocated on this connection.
pub fn classify_incoming(
    role: Role,
    metadata: &[u8],
    association: Association,
    stream_exists: impl Fn(u64) -> bool,
) -> Result<FlowDecision, FlowRejection> {
    let md = TcMetadata::parse(metadata)?;
    match association {
        Association::None => match role {
            Role::Server if md.stream_id == 0 => Ok(FlowDecision::NewConnection),
            Role::P2pPublisher => Ok(FlowDecision::NewP2pStream {
                stream_id: md.stream_id,
                intent: md.intent,
            }),
            _ => Err(FlowRejection::Unassociated),
        },
        Association::Unknown => Err(FlowRejection::UnknownAssociation),
        Association::OurFlow => {
            if md.stream_id == 0 || stream_exists(md.stream_id) {
                Ok(FlowDecision::Accept {
                    stream_id: md.stream_id,
                    intent: md.intent,
                })
            } else {
                Err(FlowRejection::UnknownStream(md.stream_id))
            }
        }
    }
}

/// Server-side stream ID allocation (spec 04 §5.4): 1, 2, … masked to 24
/// bits, never 0, never one in use.
#[derive(Debug, Clone, Default)]
pub struct StreamIds {
    next: u32,
    in_use: BTreeSet<u32>,
}

/// Stream IDs are masked to 24 bits (spec 04 §5.4, tcserver).
pub const STREAM_ID_MASK: u32 = 0x00ff_ffff;

impl StreamIds {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh stream ID, or `None` if all 2^24 − 1 are in use. The scan
    /// skips IDs in use, so callers should cap streams per connection
    /// (a client can `createStream` without end).
    pub fn allocate(&mut self) -> Option<u32> {
        if self.in_use.len() >= STREAM_ID_MASK as usize {
            return None;
        }
        loop {
            self.next = self.next.wrapping_add(1) & STREAM_ID_MASK;
            if self.next != 0 && self.in_use.insert(self.next) {
                return Some(self.next);
            }
        }
    }

    /// Forgets a stream (`deleteStream`); returns whether it existed.
    pub fn release(&mut self, id: u32) -> bool {
        self.in_use.remove(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        u32::try_from(id).is_ok_and(|id| self.in_use.contains(&id))
    }

    pub fn len(&self) -> usize {
        self.in_use.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_use.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_2_examples() {
        assert_eq!(TcMetadata::new(0).to_bytes(), [0x54, 0x43, 0x04, 0x00]);
        assert_eq!(TcMetadata::new(1).to_bytes(), [0x54, 0x43, 0x04, 0x01]);
        assert_eq!(
            TcMetadata::with_intent(1, ReceiveIntent::Network).to_bytes(),
            [0x54, 0x43, 0x05, 0x01]
        );
        assert_eq!(
            TcMetadata::new(P2P_FIRST_STREAM).to_bytes(),
            [0x54, 0x43, 0x04, 0xfa, 0x89, 0x01]
        );
        for (bytes, sid, net) in [
            (&[0x54u8, 0x43, 0x04, 0x00][..], 0, false),
            (&[0x54, 0x43, 0x05, 0x01], 1, true),
            (&[0x54, 0x43, 0x04, 0xfa, 0x89, 0x01], 2_000_001, false),
        ] {
            let md = TcMetadata::parse(bytes).unwrap();
            assert_eq!(md.stream_id, sid);
            assert_eq!(md.intent.delivers_in_network_order(), net);
            assert_eq!(md.to_bytes(), bytes);
        }
    }

    #[test]
    fn unassigned_rxi_acts_on_bit_zero() {
        let md = TcMetadata::parse(&[0x54, 0x43, 0x06, 0x01]).unwrap();
        assert_eq!(md.intent, ReceiveIntent::Unassigned(2));
        assert!(!md.intent.delivers_in_network_order());
        assert!(
            TcMetadata::parse(&[0x54, 0x43, 0x07, 0x01])
                .unwrap()
                .intent
                .delivers_in_network_order()
        );
        // Reserved bits are ignored like the reference does.
        assert_eq!(
            TcMetadata::parse(&[0x54, 0x43, 0xfc, 0x03])
                .unwrap()
                .stream_id,
            3
        );
    }

    #[test]
    fn bad_metadata() {
        assert_eq!(TcMetadata::parse(b""), Err(MetadataError::Truncated));
        assert_eq!(TcMetadata::parse(b"T"), Err(MetadataError::Truncated));
        assert_eq!(TcMetadata::parse(b"TC"), Err(MetadataError::Truncated));
        assert_eq!(
            TcMetadata::parse(&[0x54, 0x43, 0x04]),
            Err(MetadataError::Truncated)
        );
        assert_eq!(
            TcMetadata::parse(&[0x54, 0x43, 0x04, 0x81]),
            Err(MetadataError::Truncated)
        );
        assert_eq!(
            TcMetadata::parse(&[0x54, 0x43, 0x00, 0x01]),
            Err(MetadataError::NoStreamId)
        );
        assert_eq!(
            TcMetadata::parse(&[0x47, 0x52, 0x1c]),
            Err(MetadataError::NotTc)
        );
        assert_eq!(
            TcMetadata::parse(&[0x54, 0x43, 0x04, 0x01, 0x00]),
            Err(MetadataError::TrailingBytes)
        );
        assert_eq!(
            TcMetadata::parse(&[
                0x54, 0x43, 0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            Err(MetadataError::BadStreamId)
        );
        assert!(!is_tc(&[0x47, 0x52]));
        assert!(is_tc(b"TC\x04\x00"));
    }

    #[test]
    fn topology_rules() {
        let exists = |s: u64| s == 1;
        let ctrl = TcMetadata::new(0).to_bytes();
        let s1 = TcMetadata::new(1).to_bytes();
        let s2 = TcMetadata::new(2).to_bytes();
        assert_eq!(
            classify_incoming(Role::Server, &ctrl, Association::None, exists),
            Ok(FlowDecision::NewConnection)
        );
        assert_eq!(
            classify_incoming(Role::Server, &s1, Association::None, exists),
            Err(FlowRejection::Unassociated)
        );
        assert_eq!(
            classify_incoming(Role::Client, &ctrl, Association::None, exists),
            Err(FlowRejection::Unassociated)
        );
        assert_eq!(
            classify_incoming(Role::Client, &ctrl, Association::OurFlow, exists),
            Ok(FlowDecision::Accept {
                stream_id: 0,
                intent: ReceiveIntent::Sequence
            })
        );
        assert_eq!(
            classify_incoming(Role::Server, &s1, Association::OurFlow, exists),
            Ok(FlowDecision::Accept {
                stream_id: 1,
                intent: ReceiveIntent::Sequence
            })
        );
        assert_eq!(
            classify_incoming(Role::Server, &s2, Association::OurFlow, exists),
            Err(FlowRejection::UnknownStream(2))
        );
        assert_eq!(
            classify_incoming(Role::Server, &s1, Association::Unknown, exists),
            Err(FlowRejection::UnknownAssociation)
        );
        assert_eq!(
            classify_incoming(Role::Server, b"\x47\x52\x1c", Association::None, exists),
            Err(FlowRejection::Metadata(MetadataError::NotTc))
        );
        let p2p = TcMetadata::new(P2P_FIRST_STREAM).to_bytes();
        assert_eq!(
            classify_incoming(Role::P2pPublisher, &p2p, Association::None, exists),
            Ok(FlowDecision::NewP2pStream {
                stream_id: 2_000_001,
                intent: ReceiveIntent::Sequence
            })
        );
    }

    #[test]
    fn stream_ids_skip_zero_and_in_use() {
        let mut ids = StreamIds::new();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        assert!(ids.release(1));
        assert!(!ids.release(1));
        assert!(ids.contains(2) && !ids.contains(1) && !ids.contains(1 << 40));
        // Wrap around the 24-bit space: 0 and 2 (in use) are skipped.
        ids.next = STREAM_ID_MASK - 1;
        assert_eq!(ids.allocate(), Some(STREAM_ID_MASK));
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn associations() {
        assert_eq!(
            association_for_new_flow(Role::Client, 0),
            AssociateWith::Nothing
        );
        assert_eq!(
            association_for_new_flow(Role::Client, 1),
            AssociateWith::ReceivedControlFlow
        );
        assert_eq!(
            association_for_new_flow(Role::Server, 0),
            AssociateWith::ReceivedControlFlow
        );
        assert_eq!(
            association_for_new_flow(Role::Server, 3),
            AssociateWith::ReceivedControlFlow
        );
        assert_eq!(
            association_for_new_flow(Role::P2pPublisher, P2P_FIRST_STREAM),
            AssociateWith::ReceivedStreamFlow
        );
        assert_eq!(
            association_for_new_flow(Role::P2pSubscriber, P2P_FIRST_STREAM),
            AssociateWith::Nothing
        );
        let md = TcMetadata::new(P2P_FIRST_STREAM).to_bytes();
        assert_eq!(
            classify_incoming(Role::P2pSubscriber, &md, Association::None, |_| true),
            Err(FlowRejection::Unassociated)
        );
        assert_eq!(
            classify_incoming(Role::P2pSubscriber, &md, Association::OurFlow, |s| s
                == P2P_FIRST_STREAM),
            Ok(FlowDecision::Accept {
                stream_id: P2P_FIRST_STREAM,
                intent: ReceiveIntent::Sequence
            })
        );
    }

    #[test]
    fn priorities() {
        assert_eq!(priority_for(0x09), TcPriority::Priority);
        assert_eq!(priority_for(0x08), TcPriority::Immediate);
        assert_eq!(priority_for(0x14), TcPriority::Immediate);
    }
}
