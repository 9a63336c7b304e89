//! Sans-IO RTMFP (RFC 7016) with the Flash crypto profile (RFC 7425).
//!
//! Bytes and `now` go in; bytes, events and deadlines come out. Nothing in
//! this module touches a socket, a clock or a global RNG.

pub mod crypto;
pub mod endpoint;
pub mod handshake;
pub mod rng;
pub mod session;
pub mod stats;
pub mod time;
pub mod wire;

pub use rng::{Rng, SeededRng};
pub use time::Instant;
pub mod cc;
pub mod flow;
pub mod rtt;
