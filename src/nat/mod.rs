//! NAT behaviour discovery, pure: observations in, an RFC 4787 verdict and a
//! peer-to-peer prediction out. No sockets here; `cmd::probe_nat` (client)
//! and `server::probes` (server) do the I/O.
//!
//! * [`stun`]: the STUN Binding codec (RFC 5389, RFC 5780 attributes).
//! * [`classify`]: what the observations of the RFC 5780 tests or the RTMFP
//!   conncheck probes (spec 05 §3) mean, with inconsistencies called out.
//! * [`matrix`]: which far NAT kinds a direct session can reach (spec 05 §5.1).

pub mod classify;
pub mod matrix;
pub mod rtmfp_probe;
pub mod stun;

pub use classify::{
    ConncheckResults, Filtering, Mapping, StunObservations, StunReply, Verdict, classify_conncheck,
    classify_stun,
};
pub use matrix::{P2pClass, Reach, reach};
