//! NetStream over TC (spec 04 §7), for either end of a stream: the sending
//! flows of a stream ([`flows`]), what arrives on a stream flow
//! ([`incoming`]) and stream names ([`name`]). Nothing here assumes a server
//! on the other end: the relay in `serve`, the client commands and direct
//! peer-to-peer streams all build on it.

pub mod flows;
pub mod incoming;
pub mod name;

pub use flows::{Lane, Lifetimes, StreamOut, timestamp_of};
pub use incoming::{Incoming, ReceiveStats, classify, is_sample_access};
pub use name::StreamName;
