//! `serve --probe-addr`: the RTMFP connectivity check of spec 05 §3, as
//! rtmfp-cpp's `conncheck` runs it, so Flash/AIR, rtmfp-cpp and our own
//! `probe-nat rtmfp://` get their results from this server too.
//!
//! On a client's `setPeerInfo` the server starts three repeating probes:
//! an IHello from the same address on another port, an IHello from another
//! address, and an FIHello over the client's session whose reply address is
//! a third probe socket. The client's RHellos come back to the probe
//! sockets, which pass their tags in ([`Server::probe_returned`]); when all
//! are back, or the tries are spent, the client gets
//! `onStatus NetConnection.ConnectivityCheck.Results` with conncheck's keys.
//!
//! Sans-IO: IHellos to send leave through [`Server::poll_probe_send`] (the
//! probe sockets' task sends them), time comes in through
//! [`Server::on_conncheck_timeout`].
//!
//! Never an amplifier: probes go only to a client's session address (it
//! completed a handshake there, so it receives), each at most `tries`
//! times, and one check per session.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Server;
use crate::flash::command::Level;
use crate::flash::{Command, StatusInfo, Value};
use crate::nat::rtmfp_probe::{PROBE_TAG_LEN, ihello_datagram};
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::proto::{Instant, Rng};

/// The status code of the results (spec 05 §3.2 step 6).
pub const RESULTS_CODE: &str = "NetConnection.ConnectivityCheck.Results";
/// Sent when the client's address changes while it is being checked.
pub const ADDRESS_CHANGE_CODE: &str = "NetConnection.AddressChange.Notify";
/// Stagger between the three probes (the reference's default offset).
const OFFSET: Duration = Duration::from_millis(20);
/// The shortest repeat interval (spec 05 §3.2: ERTO, at least 0.25 s).
const MIN_ERTO: Duration = Duration::from_millis(250);
/// Probes sent per kind, at most (the reference's default tries).
pub const TRIES: u32 = 5;
/// Checks running at once; more `setPeerInfo`s wait for no one and are
/// not checked (a flood of sessions cannot make the probes a flood).
const MAX_CHECKS: usize = 4096;

/// Which probe sockets play which role for one address family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeRoles {
    /// Same IP as the server, another port (A1:P2).
    pub same_address: Option<usize>,
    /// Another IP (A2:Pa).
    pub different_address: Option<usize>,
    /// Where the FIHello asks the client to answer (A3:Pi; another IP, or
    /// failing that another port of A2).
    pub intro_reply: Option<usize>,
}

impl ProbeRoles {
    /// Picks the roles among `probes` for the server address `main` (if its
    /// IP is unspecified, the first probe address of the family stands for it).
    pub fn choose(main: SocketAddr, probes: &[SocketAddr]) -> ProbeRoles {
        let fam: Vec<(usize, SocketAddr)> = probes
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, a)| a.is_ipv4() == main.is_ipv4())
            .collect();
        let a1: IpAddr = if main.ip().is_unspecified() {
            match fam.first() {
                Some((_, a)) => a.ip(),
                None => return ProbeRoles::default(),
            }
        } else {
            main.ip()
        };
        let same_address = fam
            .iter()
            .find(|(_, a)| a.ip() == a1 && a.port() != main.port())
            .map(|(i, _)| *i);
        let diff = fam.iter().find(|(_, a)| a.ip() != a1).copied();
        let intro_reply = diff.and_then(|(di, d)| {
            fam.iter()
                .find(|(_, a)| a.ip() != a1 && a.ip() != d.ip())
                .or_else(|| {
                    fam.iter()
                        .find(|(i, a)| *i != di && a.ip() == d.ip() && a.port() != d.port())
                })
                .map(|(i, _)| *i)
        });
        ProbeRoles {
            same_address,
            different_address: diff.map(|(i, _)| i),
            intro_reply,
        }
    }
}

/// An IHello for the probe sockets' task to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSend {
    /// Index of the probe socket (as given to `--probe-addr`).
    pub via: usize,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The server's probe sockets and policy.
pub struct ConncheckConfig {
    /// The probe sockets' addresses, by index.
    pub probe_addrs: Vec<SocketAddr>,
    /// The server's listening addresses (one per family at most is used).
    pub listen: Vec<SocketAddr>,
    /// Randomness for the probe tags.
    pub rng: Box<dyn Rng + Send>,
    /// Check only clients of these apps (`--probe-app`); empty: every
    /// client that sends `setPeerInfo`, as rtmfp-cpp's conncheck does.
    pub apps: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SameAddress = 0,
    DifferentAddress = 1,
    Intro = 2,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The socket it uses (IHello sender, or FIHello reply receiver).
    socket: usize,
    next: Instant,
    sent: u32,
    returned: bool,
}

struct Check {
    tag: [u8; PROBE_TAG_LEN],
    epd: Vec<u8>,
    observed: SocketAddr,
    reported: Vec<SocketAddr>,
    erto: Duration,
    deadline: Instant,
    probes: [Option<Probe>; 3],
    intro_from: Option<SocketAddr>,
}

/// The running checks.
pub(super) struct Conncheck {
    probe_addrs: Vec<SocketAddr>,
    listen: Vec<SocketAddr>,
    rng: Box<dyn Rng + Send>,
    apps: Vec<String>,
    checks: HashMap<SessionHandle, Check>,
    by_tag: HashMap<[u8; PROBE_TAG_LEN], SessionHandle>,
    out: VecDeque<ProbeSend>,
}

/// Counters for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConncheckStats {
    pub started: u64,
    pub ihellos_sent: u64,
    pub fihellos_sent: u64,
    pub returned: u64,
    pub results_sent: u64,
}

impl Conncheck {
    pub(super) fn new(cfg: ConncheckConfig) -> Self {
        Self {
            probe_addrs: cfg.probe_addrs,
            listen: cfg.listen,
            rng: cfg.rng,
            apps: cfg.apps,
            checks: HashMap::new(),
            by_tag: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    fn roles(&self, observed: SocketAddr) -> ProbeRoles {
        let main = self
            .listen
            .iter()
            .find(|a| a.is_ipv4() == observed.is_ipv4())
            .copied();
        let unspecified: IpAddr = if observed.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        ProbeRoles::choose(
            main.unwrap_or(SocketAddr::new(unspecified, 0)),
            &self.probe_addrs,
        )
    }

    fn timeout(&self) -> Option<Instant> {
        self.checks
            .values()
            .map(|c| {
                c.probes
                    .iter()
                    .flatten()
                    .filter(|p| !p.returned && p.sent < TRIES)
                    .map(|p| p.next)
                    .fold(c.deadline, Instant::min)
            })
            .min()
    }
}

impl Server {
    /// Turns the connectivity check on (`serve --probe-addr`).
    pub fn enable_conncheck(&mut self, cfg: ConncheckConfig) {
        self.conncheck = Some(Conncheck::new(cfg));
    }

    /// The next IHello for the probe sockets to send.
    pub fn poll_probe_send(&mut self) -> Option<ProbeSend> {
        self.conncheck.as_mut()?.out.pop_front()
    }

    /// The check's next deadline, if one runs.
    pub fn conncheck_timeout(&self) -> Option<Instant> {
        self.conncheck.as_ref()?.timeout()
    }

    pub fn conncheck_stats(&self) -> ConncheckStats {
        self.conncheck_stats
    }

    /// Called on `setPeerInfo` (spec 05 §3.2 steps 2–3): starts the probes
    /// once per session.
    pub(super) fn start_conncheck(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        reported: &[SocketAddr],
    ) {
        let Some(cc) = self.conncheck.as_mut() else {
            return;
        };
        if cc.checks.contains_key(&h) || cc.checks.len() >= MAX_CHECKS {
            return;
        }
        if !cc.apps.is_empty() {
            let app = self.registry.member(h).map(|m| m.app.as_str());
            if !app.is_some_and(|a| cc.apps.iter().any(|x| x == a)) {
                return;
            }
        }
        let Some(s) = ep.session(h) else { return };
        let observed = s.far_addr;
        // The repeat interval: the session's ERTO (at least 250 ms), as
        // conncheck uses, but no more than 3 × SRTT: just after the
        // handshake the ERTO is inflated by the few RTT samples, while an
        // answer to a probe takes one round trip. This keeps a check behind
        // a port-filtering NAT (nothing comes back, the schedule runs out)
        // under 2 s on a 50 ms path.
        let rtt = s.transport.rtt();
        let erto = rtt
            .srtt()
            .map_or(rtt.erto(), |srtt| rtt.erto().min(srtt * 3))
            .max(MIN_ERTO);
        let Some(conn) = self.conns.get(&h) else {
            return;
        };
        let epd = crate::proto::crypto::epd_for_peer(&conn.peer_id);
        let roles = cc.roles(observed);
        let mut tag = [0u8; PROBE_TAG_LEN];
        cc.rng.fill(&mut tag);
        let probe = |socket: Option<usize>, k: u32| {
            socket.map(|socket| Probe {
                socket,
                next: now + OFFSET * k,
                sent: 0,
                returned: false,
            })
        };
        let check = Check {
            tag,
            epd,
            observed,
            reported: reported.to_vec(),
            erto,
            // The reference's timeout: offset × 3 + ERTO × tries.
            deadline: now + OFFSET * 3 + erto * TRIES,
            probes: [
                probe(roles.same_address, 1),
                probe(roles.different_address, 2),
                probe(roles.intro_reply, 3),
            ],
            intro_from: None,
        };
        cc.by_tag.insert(tag, h);
        cc.checks.insert(h, check);
        self.conncheck_stats.started += 1;
        self.on_conncheck_timeout(ep, now);
    }

    /// A probe socket got an RHello with a probe tag (spec 05 §3.2 step 5).
    pub fn probe_returned(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        via: usize,
        from: SocketAddr,
        tag: [u8; PROBE_TAG_LEN],
    ) {
        let Some(cc) = self.conncheck.as_mut() else {
            return;
        };
        let Some(&h) = cc.by_tag.get(&tag) else {
            return;
        };
        let Some(c) = cc.checks.get_mut(&h) else {
            return;
        };
        let Some(k) = c
            .probes
            .iter()
            .position(|p| p.is_some_and(|p| p.socket == via && !p.returned))
        else {
            return;
        };
        if let Some(p) = c.probes[k].as_mut() {
            p.returned = true;
        }
        if k == Kind::Intro as usize {
            c.intro_from = Some(from);
        }
        self.conncheck_stats.returned += 1;
        self.on_conncheck_timeout(ep, now);
    }

    /// Sends the probes that are due and the results that are ready.
    pub fn on_conncheck_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let Some(cc) = self.conncheck.as_mut() else {
            return;
        };
        let mut finished = Vec::new();
        let mut fihellos = Vec::new();
        for (h, c) in cc.checks.iter_mut() {
            for (k, slot) in c.probes.iter_mut().enumerate() {
                let Some(p) = slot.as_mut() else { continue };
                if p.returned || p.sent >= TRIES || now < p.next || now >= c.deadline {
                    continue;
                }
                p.sent += 1;
                p.next = now + c.erto;
                if k == Kind::Intro as usize {
                    if let Some(reply) = cc.probe_addrs.get(p.socket) {
                        fihellos.push((*h, c.epd.clone(), *reply, c.tag));
                    }
                } else if let Some(bytes) = ihello_datagram(&c.epd, &c.tag) {
                    cc.out.push_back(ProbeSend {
                        via: p.socket,
                        to: c.observed,
                        bytes,
                    });
                    self.conncheck_stats.ihellos_sent += 1;
                }
            }
            let all_back = c.probes.iter().flatten().all(|p| p.returned);
            if all_back || now >= c.deadline {
                finished.push(*h);
            }
        }
        for (h, epd, reply, tag) in fihellos {
            if ep.forward_ihello(h, &epd, reply, &tag) {
                self.conncheck_stats.fihellos_sent += 1;
            }
        }
        for h in finished {
            self.finish_conncheck(ep, now, h);
        }
    }

    fn finish_conncheck(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle) {
        let Some(cc) = self.conncheck.as_mut() else {
            return;
        };
        let Some(c) = cc.checks.remove(&h) else {
            return;
        };
        cc.by_tag.remove(&c.tag);
        let info = results_info(&c, ep.session(h).map(|s| s.far_addr));
        self.conncheck_stats.results_sent += 1;
        self.send_command(ep, now, h, Command::on_status(&info));
    }

    /// The client's address moved during its check (spec 05 §3.2 step 7):
    /// the probes follow it, and the client is told, as conncheck does.
    pub(super) fn conncheck_address_changed(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        addr: SocketAddr,
    ) {
        let Some(c) = self.conncheck.as_mut().and_then(|cc| cc.checks.get_mut(&h)) else {
            return;
        };
        c.observed = addr;
        let info = StatusInfo::new(Level::Status, ADDRESS_CHANGE_CODE);
        self.send_command(ep, now, h, Command::on_status(&info));
    }

    /// The session is gone: its check too.
    pub(super) fn end_conncheck(&mut self, h: SessionHandle) {
        if let Some(cc) = self.conncheck.as_mut()
            && let Some(c) = cc.checks.remove(&h)
        {
            cc.by_tag.remove(&c.tag);
        }
    }
}

fn opt(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Boolean)
}

/// The results object with conncheck's keys; null where a test could not
/// run (spec 05 §3.2 step 6).
fn results_info(c: &Check, now_addr: Option<SocketAddr>) -> StatusInfo {
    let public = now_addr.unwrap_or(c.observed);
    let reported = !c.reported.is_empty();
    let is_local = reported.then(|| c.reported.contains(&public));
    let port_matches = reported.then(|| c.reported.iter().any(|a| a.port() == public.port()));
    let ran = |k: Kind| c.probes[k as usize].map(|p| p.returned);
    let intro = ran(Kind::Intro);
    // Spec 05 §3.2: the source IP; rtmfp-cpp compares IP and port here.
    let keeps_ip = intro.map(|ok| ok && c.intro_from.is_some_and(|a| a.ip() == public.ip()));
    let keeps_port = intro.map(|ok| ok && c.intro_from.is_some_and(|a| a.port() == public.port()));
    StatusInfo::new(Level::Status, RESULTS_CODE)
        .description("Connectivity Check results")
        .with("publicAddress", Value::str(public.to_string()))
        .with("publicAddressIsLocal", opt(is_local))
        .with("publicPortMatchesLocalPort", opt(port_matches))
        .with(
            "receiveSameAddressDifferentPortAllowed",
            Value::Boolean(ran(Kind::SameAddress).unwrap_or(false)),
        )
        .with(
            "receiveDifferentAddressDifferentPortAllowed",
            opt(ran(Kind::DifferentAddress)),
        )
        .with("sendAfterIntroductionAllowed", opt(intro))
        .with("sendAfterIntroductionPreservesSourceAddress", opt(keeps_ip))
        .with("sendAfterIntroductionPreservesSourcePort", opt(keeps_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn roles_from_the_rfc5780_layout() {
        let probes = [
            a("192.0.2.1:3478"),
            a("192.0.2.1:3479"),
            a("192.0.2.2:3478"),
            a("192.0.2.2:3479"),
        ];
        let r = ProbeRoles::choose(a("192.0.2.1:1935"), &probes);
        assert_eq!(
            r,
            ProbeRoles {
                same_address: Some(0),
                different_address: Some(2),
                intro_reply: Some(3),
            }
        );
        // Three IPs: the third one replies to the introduction.
        let probes = [
            a("192.0.2.1:1936"),
            a("192.0.2.2:1937"),
            a("192.0.2.3:1938"),
        ];
        let r = ProbeRoles::choose(a("192.0.2.1:1935"), &probes);
        assert_eq!(r.intro_reply, Some(2));
        // One probe address on the same IP: only the first test runs.
        let r = ProbeRoles::choose(a("192.0.2.1:1935"), &[a("192.0.2.1:1936")]);
        assert_eq!(
            r,
            ProbeRoles {
                same_address: Some(0),
                ..Default::default()
            }
        );
        // Other family: nothing.
        let r = ProbeRoles::choose(a("[2001:db8::1]:1935"), &probes);
        assert_eq!(r, ProbeRoles::default());
    }
}
