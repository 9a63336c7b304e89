//! RTMFP wire format (spec 01): checked views and encoders for every
//! structure that crosses the network. Nothing here allocates per packet.

pub mod codec;
pub mod error;
pub mod option;
pub mod vlu;

pub use codec::{Reader, Writer};
pub use error::WireError;
