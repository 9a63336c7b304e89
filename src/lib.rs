//! `rtmfp`: an RTMFP (RFC 7016, RFC 7425) toolkit.
//!
//! The protocol core lives in [`proto`] and does no I/O; everything above it
//! (the tokio edge, the Flash TC layer, the commands) builds on it.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod flash;
pub mod media;
pub mod nat;
pub mod net;
pub mod proto;
pub mod server;
pub mod tui;
