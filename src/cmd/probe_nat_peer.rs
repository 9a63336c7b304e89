//! `rtmfp probe-nat --peer PEERID|NAME rtmfp://…`: after the NAT probe,
//! predict whether a direct session to that peer can open (spec 05 §5.1,
//! from our class; the peer's is unknown), then try one through the server's
//! introduction ([`crate::client::PeerApp`]) and say whether what happened
//! agrees with the prediction, and what it tells about the peer's NAT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::probe_nat::Out;
use crate::cli::exit;
use crate::client::report::ms;
use crate::client::{AcceptPolicy, PeerApp, PeerAppConfig, PeerEvent, PeerOutput, RtmfpUrl};
use crate::nat::{P2pClass, Verdict, reach};
use crate::net::{Clock, Driver};
use crate::proto::crypto::{CryptoSettings, Identity, peer_id_hex};

/// The far kinds a peer can be behind (UDP blocked aside: it has a server
/// session, so its UDP gets out).
const FAR: [P2pClass; 4] = [
    P2pClass::FullCone,
    P2pClass::Restricted,
    P2pClass::PortRestricted,
    P2pClass::Symmetric,
];

/// What spec 05 §5.1 predicts from our side alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// `Some(true)`: direct whatever the peer's NAT; `Some(false)`: direct
    /// for none; `None`: it depends on the peer's NAT (or ours is unknown).
    pub direct: Option<bool>,
    pub direct_with: Vec<P2pClass>,
    pub relay_with: Vec<P2pClass>,
}

pub fn predict(ours: Option<P2pClass>) -> Prediction {
    let Some(me) = ours else {
        return Prediction {
            direct: None,
            direct_with: vec![],
            relay_with: vec![],
        };
    };
    let (d, r): (Vec<P2pClass>, Vec<P2pClass>) = FAR.iter().partition(|f| reach(me, **f).direct);
    Prediction {
        direct: if r.is_empty() {
            Some(true)
        } else if d.is_empty() {
            Some(false)
        } else {
            None
        },
        direct_with: d,
        relay_with: r,
    }
}

/// Whether the outcome fits the prediction, and what it says of the peer.
pub fn judge(p: &Prediction, opened: bool) -> (Option<bool>, String) {
    let names = |v: &[P2pClass]| v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    match (p.direct, opened) {
        (None, _) if p.direct_with.is_empty() && p.relay_with.is_empty() => (
            None,
            "our NAT was not classified, so there was no prediction to check".into(),
        ),
        (Some(true), true) | (Some(false), false) => (Some(true), "as predicted".into()),
        (Some(true), false) => (
            Some(false),
            "NOT as predicted: from here every NAT kind should be reachable; the peer's UDP may be \
             blocked or filtered by a firewall, its mapping may have expired, or packets were lost"
                .into(),
        ),
        (Some(false), true) => (
            Some(false),
            "NOT as predicted: the NATs behaved better than their class (e.g. a symmetric NAT that \
             preserves ports); the prediction is conservative"
                .into(),
        ),
        (None, true) => (
            Some(true),
            format!("as predicted, so the peer is behind one of: {}", names(&p.direct_with)),
        ),
        (None, false) => (
            Some(true),
            format!(
                "consistent with the prediction if the peer is behind one of: {} (or its UDP is blocked)",
                names(&p.relay_with)
            ),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    out: &Out,
    url: &RtmfpUrl,
    target: &str,
    server: SocketAddr,
    verdict: &Verdict,
    identity: &Identity,
    crypto: &CryptoSettings,
    timeout: Duration,
) -> i32 {
    let prediction = predict(verdict.class());
    let clock = Clock::new();
    let (ep, sockets, locals) =
        match super::connect::endpoint(identity, crypto, None, &[server], &clock, None) {
            Ok(x) => x,
            Err(e) => {
                out.error("failure", &format!("cannot bind: {e}"));
                return exit::FAILURE;
            }
        };
    let cfg = PeerAppConfig {
        url: url.original.clone(),
        app: url.app.clone(),
        candidates: vec![server],
        local_addrs: locals,
        timeout,
        peers: vec![target.to_owned()],
        name: None,
        list_peers: false,
        introductions: true,
        stay: Duration::ZERO,
        peer_timeout: None,
        policy: AcceptPolicy::default(),
    };
    let seen: Arc<Mutex<Vec<PeerOutput>>> = Arc::default();
    let keep = Arc::clone(&seen);
    let sink = Box::new(move |o: PeerOutput| {
        if let Ok(mut v) = keep.lock() {
            v.push(o);
        }
    });
    let mut driver =
        Driver::new(ep, PeerApp::new(cfg, sink), sockets, clock).with_transport_errors();
    let stop = super::signals::Stop::install();
    if let Err(e) = driver.run(stop.wait_unit(), Duration::from_secs(1)).await {
        out.error("failure", &format!("peer attempt: {e}"));
        return exit::FAILURE;
    }
    if let Some(s) = stop.signal() {
        driver.app.interrupted(s.name());
    }
    let events = seen.lock().map(|v| v.clone()).unwrap_or_default();
    let mut peer_id = None;
    let mut outcome: Option<Json> = None;
    let mut opened = false;
    let mut unknown = false;
    let mut text = String::new();
    for e in &events {
        match e {
            PeerOutput::Unresolved { explanation, .. } => {
                unknown = true;
                outcome = Some(json!({"direct": false, "message": explanation}));
                text = explanation.clone();
            }
            PeerOutput::Peer {
                target: Some(_),
                event:
                    PeerEvent::Opened {
                        peer,
                        addr,
                        path,
                        elapsed,
                        rtt,
                        ..
                    },
            } => {
                opened = true;
                peer_id = Some(*peer);
                outcome = Some(json!({"direct": true, "addr": addr.to_string(),
                    "path": path.as_str(), "elapsed_ms": ms(*elapsed), "rtt_ms": rtt.map(ms)}));
                text = format!(
                    "direct session open to {addr} ({} path) in {:.0} ms",
                    path.as_str(),
                    ms(*elapsed)
                );
            }
            PeerOutput::Peer {
                target: Some(_),
                event:
                    PeerEvent::Failed {
                        peer,
                        unknown: u,
                        explanation,
                        elapsed,
                        ..
                    },
            } => {
                unknown |= *u;
                peer_id = Some(*peer);
                outcome = Some(json!({"direct": false, "message": explanation,
                    "elapsed_ms": ms(*elapsed)}));
                text = format!("no direct session: {explanation}");
            }
            _ => {}
        }
    }
    let Some(actual) = outcome else {
        let why = driver
            .app
            .failure()
            .map_or("the attempt did not run".to_owned(), |f| f.to_string());
        out.error("peer", &why);
        return driver.app.exit_code().max(exit::FAILURE);
    };
    let (agrees, explanation) = if unknown {
        (None, "the server does not know that peer".to_owned())
    } else {
        judge(&prediction, opened)
    };
    let keys = |v: &[P2pClass]| v.iter().map(|c| c.key()).collect::<Vec<_>>();
    if out.json {
        println!(
            "{}",
            json!({"type": "peer_check", "url": url.original, "target": target,
                "peer_id": peer_id.map(|p| peer_id_hex(&p)),
                "our_class": verdict.class().map(P2pClass::key),
                "predicted": {"direct": prediction.direct,
                    "direct_with": keys(&prediction.direct_with),
                    "relay_with": keys(&prediction.relay_with)},
                "actual": actual, "agrees": agrees, "explanation": explanation})
        );
    } else {
        let names = |v: &[P2pClass]| v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
        let pred = match prediction.direct {
            Some(true) => "direct, whatever the peer's NAT".to_owned(),
            Some(false) => "relay: no direct session from here".to_owned(),
            None if prediction.direct_with.is_empty() => "none (our NAT is unknown)".to_owned(),
            None => format!(
                "direct if the peer is behind {}; relay if {}",
                names(&prediction.direct_with),
                names(&prediction.relay_with)
            ),
        };
        println!("\nDirect session to peer {target}:");
        println!("  predicted:    {pred}");
        println!("  actual:       {text}");
        println!("  verdict:      {explanation}");
    }
    if unknown { exit::PEER } else { exit::OK }
}

#[cfg(test)]
mod tests {
    use super::*;
    use P2pClass::*;

    #[test]
    fn predictions_and_judgements() {
        let p = predict(Some(FullCone));
        assert_eq!(p.direct, Some(true));
        assert_eq!(judge(&p, true).0, Some(true));
        assert_eq!(judge(&p, false).0, Some(false));
        let p = predict(Some(PortRestricted));
        assert_eq!(p.direct, None);
        assert_eq!(p.relay_with, vec![Symmetric]);
        let (ok, why) = judge(&p, false);
        assert_eq!(ok, Some(true));
        assert!(why.contains("symmetric"), "{why}");
        let p = predict(Some(Symmetric));
        assert_eq!(p.direct_with, vec![FullCone, Restricted]);
        let p = predict(Some(Blocked));
        assert_eq!(p.direct, Some(false));
        assert_eq!(judge(&p, true).0, Some(false));
        assert_eq!(predict(None).direct, None);
        assert_eq!(judge(&predict(None), true).0, None);
    }
}
