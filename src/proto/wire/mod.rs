//! RTMFP wire format (spec 01): checked views and encoders for every
//! structure that crosses the network. Nothing here allocates per packet.

pub mod address;
pub mod chunk;
pub mod codec;
pub mod error;
pub mod header;
pub mod option;
pub mod vlu;

pub use address::{AddressOrigin, PeerAddress};
pub use chunk::{
    Ack, AckKind, BufferProbe, Chunk, Chunks, CookieChange, FIHello, FlowException, IHello,
    IIKeying, NextUserData, PacketFragment, RHello, RIKeying, Redirect, UserData, chunk_type,
    data_flags, encode_close, encode_close_ack, encode_ecn_report, encode_ping, encode_ping_reply,
    encode_range_ack,
};
pub use codec::{Reader, Writer};
pub use error::WireError;
pub use header::{MAX_SESSION_PACKET, MAX_STARTUP_PACKET, Mode, PacketHeader, scramble_sid};
