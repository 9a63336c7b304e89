//! Sessions to peers by peer ID, through the rendezvous server (spec 02 §15,
//! spec 04 §8 and §11, spec 05): the IHello with the peer-ID EPD goes to the
//! server over the same endpoint (the same socket, whose NAT mapping is the
//! one the server has seen), the Redirect's addresses are all tried at once
//! while the server forwards our IHello so the peer answers and opens its
//! own NAT; the first candidate that completes the handshake wins.
//!
//! [`PeerSessions`] is pure logic over `&mut Endpoint`: feed it every
//! endpoint event ([`PeerSessions::on_event`]) and its timer, and drain
//! [`PeerEvent`]s. It also applies an [`AcceptPolicy`] to sessions peers
//! open to us, and closes every peer session when the server session ends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::Instant;
use crate::proto::crypto::{DhGroup, epd_for_peer, peer_id_hex};
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::session::{CloseReason, OpenFailure, Role, State};
use crate::proto::wire::address::{AddressOrigin, PeerAddress};

/// The DH groups a peer session we open prefers, in order, among those we
/// are configured with (`--dh-group auto` offers all four). A server session
/// takes the strongest common group (16 with an rtmfp-cpp or our serve); a
/// peer session prefers 14: 2048 bits (about 112-bit strength, RFC 8247's
/// minimum for IKE), unlike group 2's 1024 bits (a widely shared prime of
/// the size Logjam showed within reach of precomputation), at a fifth of
/// group 16's cost per exponentiation, which every peer session pays on
/// both sides while the user waits. rtmfp-cpp peers offer 16, 14 and 2.
/// Flash Player and librtmfp peers offer only group 2 (and read only a
/// single-key group-2 certificate, which `--dh-group 2` gives us).
pub const PEER_GROUPS: [DhGroup; 4] = [DhGroup::G14, DhGroup::G16, DhGroup::G5, DhGroup::G2];

/// How the winning candidate was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// An address the peer reported itself (`setPeerInfo`): host/local.
    Host,
    /// The address the server sees the peer from: its NAT's mapping.
    Reflexive,
    /// Not in the Redirect: the peer answered from elsewhere.
    PeerReflexive,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Host => "host",
            PathKind::Reflexive => "reflexive",
            PathKind::PeerReflexive => "peer-reflexive",
        }
    }
}

/// One address tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub kind: PathKind,
    /// When it was learned, from the request.
    pub after: Duration,
}

/// What happened to the peer sessions.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// The server answered with addresses to try (one event per Redirect).
    Attempt {
        peer: [u8; 32],
        candidates: Vec<Candidate>,
    },
    /// A direct session is open. `rtt` is one measured round trip on it.
    Opened {
        peer: [u8; 32],
        session: SessionHandle,
        addr: SocketAddr,
        path: PathKind,
        /// From the request to the open session.
        elapsed: Duration,
        rtt: Option<Duration>,
        /// One round trip on the server session, measured at the same
        /// moment: with `rtt`, what the opening is compared with.
        server_rtt: Option<Duration>,
        /// The DH group the session was keyed with.
        group: u8,
        /// Keyed with our Flash Player identity: the peer presented Flash
        /// Player's certificate (Flash, librtmfp) and sees us by that
        /// identity's peer ID.
        flash_player: bool,
        candidates: Vec<Candidate>,
    },
    Failed {
        peer: [u8; 32],
        /// The server said it does not know the peer (in our app).
        unknown: bool,
        explanation: String,
        candidates: Vec<Candidate>,
        elapsed: Duration,
    },
    /// A peer opened a session to us; `accepted` says what the policy did.
    Incoming {
        peer: [u8; 32],
        session: SessionHandle,
        addr: SocketAddr,
        accepted: bool,
    },
    /// A peer session ended.
    Closed {
        peer: [u8; 32],
        session: SessionHandle,
        reason: String,
    },
}

/// Which peers may open sessions to us.
#[derive(Debug, Clone, Default)]
pub struct AcceptPolicy {
    /// Most incoming peer sessions at once (`None`: no limit).
    pub max_peers: Option<usize>,
    /// Only these peer IDs (empty: anyone).
    pub allow: Vec<[u8; 32]>,
}

impl AcceptPolicy {
    pub fn accepts(&self, peer: &[u8; 32], current: usize) -> bool {
        (self.allow.is_empty() || self.allow.contains(peer))
            && self.max_peers.is_none_or(|m| current < m)
    }
}

#[derive(Debug)]
struct Opening {
    peer: [u8; 32],
    session: SessionHandle,
    started: Instant,
    deadline: Instant,
    candidates: Vec<Candidate>,
    redirects: usize,
    /// Open, waiting for the RTT probes (peer and server sessions).
    opened: Option<(Instant, SocketAddr)>,
    rtt: Option<Duration>,
    server_rtt: Option<Duration>,
    /// Whether the server ping could be sent (else not waited for).
    server_ping: bool,
    group: u8,
    flash_player: bool,
}

/// The peer sessions made through one server session.
pub struct PeerSessions {
    server: SessionHandle,
    timeout: Duration,
    policy: AcceptPolicy,
    openings: Vec<Opening>,
    /// Open peer sessions, ours and incoming.
    open: Vec<(SessionHandle, [u8; 32], Role)>,
    events: VecDeque<PeerEvent>,
}

/// Longest wait for the RTT probe on a new peer session.
const RTT_WAIT: Duration = Duration::from_secs(1);

impl PeerSessions {
    pub fn new(server: SessionHandle, timeout: Duration, policy: AcceptPolicy) -> Self {
        Self {
            server,
            timeout,
            policy,
            openings: Vec::new(),
            open: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Marks the dashboard rows of open peer sessions: those we opened by
    /// peer ID as direct, those the server introduced to us as introduced.
    pub fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        use crate::net::snapshot::PeerKind;
        for row in &mut snap.sessions {
            if let Some((_, _, role)) = self.open.iter().find(|(h, _, _)| h.0 == row.handle) {
                row.kind = match role {
                    Role::Initiator => PeerKind::Direct,
                    Role::Responder => PeerKind::Introduced,
                };
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// Openings not finished yet.
    pub fn pending(&self) -> usize {
        self.openings.len()
    }

    /// The peer on an open peer session (ours or incoming).
    pub fn peer_of(&self, h: SessionHandle) -> Option<[u8; 32]> {
        self.open
            .iter()
            .find(|(s, _, _)| *s == h)
            .map(|(_, p, _)| *p)
    }

    pub fn open_sessions(&self) -> impl Iterator<Item = (SessionHandle, [u8; 32])> + '_ {
        self.open.iter().map(|(h, p, _)| (*h, *p))
    }

    /// Asks the server (at `server_addr`, over its session's socket) for
    /// `peer` and starts trying what it answers.
    pub fn open_peer_session(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        peer: [u8; 32],
    ) -> Result<SessionHandle, String> {
        let server_addr = ep
            .session(self.server)
            .filter(|s| s.state == State::Open)
            .map(|s| s.far_addr)
            .ok_or("the server session is not open")?;
        if peer == ep.identity().fingerprint() {
            return Err("that is our own peer ID".into());
        }
        let h = ep
            .connect(now, &epd_for_peer(&peer), &[server_addr])
            .map_err(|e| format!("cannot start a session: {e:?}"))?;
        if self.openings.iter().any(|o| o.session == h) || self.open.iter().any(|o| o.0 == h) {
            return Err("a session to that peer is already open or opening".into());
        }
        ep.set_opening_groups(h, &PEER_GROUPS);
        self.openings.push(Opening {
            peer,
            session: h,
            started: now,
            deadline: now + self.timeout,
            candidates: Vec::new(),
            redirects: 0,
            opened: None,
            rtt: None,
            server_rtt: None,
            server_ping: false,
            group: 0,
            flash_player: false,
        });
        Ok(h)
    }

    pub fn timeout(&self) -> Option<Instant> {
        self.openings
            .iter()
            .map(|o| o.opened.map_or(o.deadline, |(t, _)| t + RTT_WAIT))
            .min()
    }

    pub fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let due: Vec<usize> = (0..self.openings.len())
            .filter(|&i| {
                let o = &self.openings[i];
                now >= o.opened.map_or(o.deadline, |(t, _)| t + RTT_WAIT)
            })
            .collect();
        for i in due.into_iter().rev() {
            let o = self.openings.remove(i);
            if o.opened.is_some() {
                self.report_open(o);
                continue;
            }
            let answered = ep
                .session(o.session)
                .is_some_and(|s| s.state == State::KeyingSent);
            ep.close(now, o.session, false);
            let explanation = explain_timeout(&o, answered, self.timeout);
            self.fail(o, now, false, explanation);
        }
    }

    /// Feeds an endpoint event; returns it back if it was not ours.
    pub fn on_event(&mut self, ep: &mut Endpoint, now: Instant, e: Event) -> Option<Event> {
        match e {
            Event::Redirected {
                session,
                mut addresses,
                gone,
                from,
            } => {
                let server = ep.session(self.server).map(|s| s.far_addr);
                let Some(o) = self.openings.iter_mut().find(|o| o.session == session) else {
                    return Some(Event::Redirected {
                        session,
                        from,
                        addresses,
                        gone,
                    });
                };
                // The target answering the forwarded IHello with an empty
                // Redirect (its certificate did not fit 3x): its source is
                // the target's reflexive address toward us.
                if addresses.is_empty() && !gone && Some(from) != server {
                    addresses.push(PeerAddress {
                        addr: from,
                        origin: AddressOrigin::Observed,
                    });
                }
                o.redirects += 1;
                let after = now.saturating_since(o.started);
                let mut new = Vec::new();
                for a in &addresses {
                    if o.candidates.iter().any(|c| c.addr == a.addr) {
                        continue;
                    }
                    let kind = match a.origin {
                        AddressOrigin::Reported => PathKind::Host,
                        _ => PathKind::Reflexive,
                    };
                    let c = Candidate {
                        addr: a.addr,
                        kind,
                        after,
                    };
                    o.candidates.push(c.clone());
                    new.push(c);
                }
                let peer = o.peer;
                if gone && o.candidates.is_empty() {
                    let i = self.openings.iter().position(|o| o.session == session);
                    let o = self.openings.remove(i.expect("found above"));
                    ep.close(now, session, false);
                    let msg = format!(
                        "the server does not know peer {} in this app: it is not connected, is connected to \
                         another app, or does not accept introductions",
                        peer_id_hex(&peer)
                    );
                    self.fail(o, now, true, msg);
                } else if !new.is_empty() {
                    self.events.push_back(PeerEvent::Attempt {
                        peer,
                        candidates: new,
                    });
                }
                None
            }
            Event::Opened {
                session,
                role,
                far_addr,
                peer_id,
            } if session != self.server => {
                if let Some(o) = self.openings.iter_mut().find(|o| o.session == session) {
                    o.opened = Some((now, far_addr));
                    let far = ep.session(session).and_then(|s| s.far.as_ref());
                    o.group = far.map_or(0, |f| f.group);
                    o.flash_player = far.is_some_and(|f| f.flash_fallback);
                    self.open.push((session, peer_id, role));
                    // The floor the opening is judged against: one round
                    // trip to the peer and one to the server, both measured
                    // now, by the same processes.
                    let peer_ping = ep.ping(now, session);
                    o.server_ping = ep.ping(now, self.server);
                    if !peer_ping {
                        let i = self.openings.iter().position(|o| o.session == session);
                        let o = self.openings.remove(i.expect("found above"));
                        self.report_open(o);
                    }
                    return None;
                }
                if role == Role::Responder {
                    let incoming = self
                        .open
                        .iter()
                        .filter(|(_, _, r)| *r == Role::Responder)
                        .count();
                    let accepted = self.policy.accepts(&peer_id, incoming);
                    if accepted {
                        self.open.push((session, peer_id, role));
                    } else {
                        ep.close(now, session, true);
                    }
                    self.events.push_back(PeerEvent::Incoming {
                        peer: peer_id,
                        session,
                        addr: far_addr,
                        accepted,
                    });
                    return None;
                }
                Some(Event::Opened {
                    session,
                    role,
                    far_addr,
                    peer_id,
                })
            }
            Event::PingReply { session, rtt, sent } => {
                let waiting = |o: &Opening| o.opened.is_some() && o.server_ping;
                if session == self.server && self.openings.iter().any(waiting) {
                    for o in self.openings.iter_mut().filter(|o| waiting(o)) {
                        o.server_rtt.get_or_insert(rtt);
                    }
                } else if let Some(o) = self
                    .openings
                    .iter_mut()
                    .find(|o| o.session == session && o.opened.is_some())
                {
                    o.rtt = Some(rtt);
                } else {
                    return Some(Event::PingReply { session, rtt, sent });
                }
                let (done, rest): (Vec<Opening>, Vec<Opening>) = std::mem::take(&mut self.openings)
                    .into_iter()
                    .partition(|o| {
                        o.opened.is_some()
                            && o.rtt.is_some()
                            && (o.server_rtt.is_some() || !o.server_ping)
                    });
                self.openings = rest;
                for o in done {
                    self.report_open(o);
                }
                None
            }
            Event::OpenFailed { session, reason } => {
                let Some(i) = self.openings.iter().position(|o| o.session == session) else {
                    return Some(Event::OpenFailed { session, reason });
                };
                let o = self.openings.remove(i);
                let msg = match reason {
                    OpenFailure::Cancelled => "cancelled".to_owned(),
                    OpenFailure::Keying => format!(
                        "peer {} answered, but the handshake could not be completed (no common DH group?)",
                        peer_id_hex(&o.peer)
                    ),
                    _ => explain_timeout(&o, false, self.timeout),
                };
                self.fail(o, now, false, msg);
                None
            }
            Event::Closed { session, reason } if session == self.server => {
                // The peer sessions made through the server go with it.
                for (h, peer, _) in std::mem::take(&mut self.open) {
                    ep.close(now, h, true);
                    self.events.push_back(PeerEvent::Closed {
                        peer,
                        session: h,
                        reason: "the server session closed".into(),
                    });
                }
                for o in std::mem::take(&mut self.openings) {
                    ep.close(now, o.session, false);
                    self.fail(o, now, false, "the server session closed".into());
                }
                Some(Event::Closed { session, reason })
            }
            Event::Closed { session, reason } => {
                let Some(i) = self.open.iter().position(|(h, _, _)| *h == session) else {
                    return Some(Event::Closed { session, reason });
                };
                let (h, peer, _) = self.open.remove(i);
                self.openings.retain(|o| o.session != h);
                let reason = match reason {
                    CloseReason::Remote => "closed by the peer".to_owned(),
                    CloseReason::Local | CloseReason::Shutdown => "closed by us".to_owned(),
                    other => format!("{other:?}"),
                };
                self.events.push_back(PeerEvent::Closed {
                    peer,
                    session: h,
                    reason,
                });
                None
            }
            Event::Flow { session, .. }
                if !self.open.iter().any(|(h, _, _)| *h == session)
                    && self.openings.iter().any(|o| o.session == session) =>
            {
                // Not reported open yet (waiting for the RTT probe): what
                // the peer opens this early is refused.
                if let Event::Flow {
                    event: crate::proto::flow::FlowEvent::NewFlow { flow, .. },
                    ..
                } = e
                    && let Some(t) = ep.transport(session)
                {
                    t.reject_flow(flow, 0);
                    ep.wake(session);
                }
                None
            }
            other => Some(other),
        }
    }

    fn report_open(&mut self, o: Opening) {
        let Some((at, addr)) = o.opened else { return };
        let path = o
            .candidates
            .iter()
            .find(|c| c.addr == addr)
            .map_or(PathKind::PeerReflexive, |c| c.kind);
        self.events.push_back(PeerEvent::Opened {
            peer: o.peer,
            session: o.session,
            addr,
            path,
            elapsed: at.saturating_since(o.started),
            rtt: o.rtt,
            server_rtt: o.server_rtt,
            group: o.group,
            flash_player: o.flash_player,
            candidates: o.candidates,
        });
    }

    fn fail(&mut self, o: Opening, now: Instant, unknown: bool, explanation: String) {
        self.events.push_back(PeerEvent::Failed {
            peer: o.peer,
            unknown,
            explanation,
            elapsed: now.saturating_since(o.started),
            candidates: o.candidates,
        });
    }
}

/// What a silent opening suggests (spec 05).
fn explain_timeout(o: &Opening, answered: bool, timeout: Duration) -> String {
    let peer = peer_id_hex(&o.peer);
    if o.redirects == 0 {
        return format!(
            "the server never answered the request for peer {peer} within {timeout:?}: it may not \
             introduce peers, or it limited our requests"
        );
    }
    let list: Vec<String> = o
        .candidates
        .iter()
        .map(|c| format!("{} ({})", c.addr, c.kind.as_str()))
        .collect();
    if answered {
        return format!(
            "peer {peer} answered, but the handshake did not complete within {timeout:?} (tried {}); \
             a Flash Player or librtmfp peer reads only Flash's single-key certificate: try \
             --dh-group 2",
            list.join(", ")
        );
    }
    let all_private = o.candidates.iter().all(|c| match c.addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    });
    let hint = if all_private {
        "every address is private or loopback, so the peer is on a network we cannot reach directly"
    } else {
        "both sides appear to be behind NATs that map or filter per destination \
         (address-and-port-dependent), or UDP between them is blocked; direct P2P is not possible \
         between them"
    };
    format!(
        "the server introduced us to peer {peer} and listed {} address(es): {}; none answered within \
         {timeout:?}: {hint}",
        list.len(),
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_limits_and_allow_list() {
        let open = AcceptPolicy::default();
        assert!(open.accepts(&[1; 32], 1000));
        let p = AcceptPolicy {
            max_peers: Some(1),
            allow: vec![[1; 32]],
        };
        assert!(p.accepts(&[1; 32], 0));
        assert!(!p.accepts(&[1; 32], 1));
        assert!(!p.accepts(&[2; 32], 0));
    }
}
