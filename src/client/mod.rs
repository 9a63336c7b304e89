//! The client side of Flash-style RTMFP: connect to a server's app, report
//! what happened, measure RTT, and generate load.
//!
//! Pure logic over `&mut Endpoint`, driven by [`crate::net::Driver`]:
//! * [`url`]: parsing `rtmfp://host[:port]/app[?query]` URLs.
//! * [`tc`]: one NetConnection on an open session (control flow, `connect`,
//!   `setPeerInfo`, Set Keepalive Timers; spec 04 §3, §5, §6.3).
//! * [`probe`]: [`ConnectApp`], one connection with a report and optional RTT samples.
//! * [`load`]: [`LoadApp`], one concurrency slot of a load run.
//! * [`report`]: what gets reported, as text and JSON lines.
//! * [`failure`]: why a setup failed (phase, kind, exit code), shared by every command.

pub mod conncheck;
pub mod failure;
pub mod load;
pub mod peer;
pub mod peer_app;
pub mod peer_stream;
pub mod probe;
pub mod report;
pub mod setup;
pub mod stream;
pub mod stun_probe;
pub mod tc;
pub mod url;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use failure::{Failure, Kind, Phase, SetupWatch};
pub use load::{LoadApp, LoadConfig, LoadShared, LoadSummary, Percentiles, SetupResult};
pub use peer::{AcceptPolicy, PathKind, PeerEvent, PeerSessions};
pub use peer_app::{PeerApp, PeerAppConfig, PeerOutput};
pub use probe::{ConnectApp, Output, ProbeConfig};
pub use report::{ConnectReport, PingSample, PingSummary};
pub use tc::{TcClient, TcEvent, TcState};
pub use url::{RtmfpUrl, StreamUrl, UrlError};

/// The address to report for a socket bound to `bound`: when bound to the
/// unspecified address, the local IP the OS would use toward `target` (a
/// UDP `connect` sends nothing, it only picks a route).
pub fn reportable_local_addr(bound: SocketAddr, target: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let any: IpAddr = if target.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let ip = std::net::UdpSocket::bind((any, 0))
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(bound.ip());
    SocketAddr::new(ip, bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_binding_reports_the_route_source() {
        let bound: SocketAddr = "0.0.0.0:40000".parse().unwrap();
        let target: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        assert_eq!(
            reportable_local_addr(bound, target),
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap()
        );
        let fixed: SocketAddr = "127.0.0.2:5".parse().unwrap();
        assert_eq!(reportable_local_addr(fixed, target), fixed);
    }
}
