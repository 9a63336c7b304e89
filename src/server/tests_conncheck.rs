//! The connectivity check end to end in simulation: our server (with three
//! probe sockets) and our `probe-nat` client app, with a modelled NAT of
//! every RFC 4787 mapping and filtering kind between them. Checks the
//! verdict, the probe counts, and the 3× rule toward addresses that have
//! not proven they receive.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::conncheck::{ConncheckConfig, TRIES};
use super::*;
use crate::client::conncheck::{ConncheckApp, ConncheckConfig as ClientConfig};
use crate::nat::rtmfp_probe::rhello_probe_tag;
use crate::nat::{Filtering, Mapping, classify_conncheck};
use crate::net::App;
use crate::proto::crypto::{CryptoSettings, DhGroup, Identity};
use crate::proto::endpoint::{EndpointConfig, MAX_DATAGRAM, ihello_datagram_len};
use crate::proto::rng::SeededRng;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const MAIN: &str = "192.0.2.1:1935";
const PROBES: [&str; 3] = ["192.0.2.1:1936", "192.0.2.2:1937", "192.0.2.3:1938"];
const PRIVATE: &str = "10.0.1.1:5000";
const PUBLIC_IP: &str = "198.51.100.7";

/// A NAT in front of the client.
struct Nat {
    mapping: Mapping,
    filtering: Filtering,
    /// Mapping key → public port.
    ports: HashMap<(Option<IpAddr>, Option<u16>), u16>,
    /// Public port → destinations sent to.
    sent_to: HashMap<u16, Vec<SocketAddr>>,
    next_port: u16,
}

impl Nat {
    fn new(mapping: Mapping, filtering: Filtering) -> Self {
        Self {
            mapping,
            filtering,
            ports: HashMap::new(),
            sent_to: HashMap::new(),
            next_port: 40000,
        }
    }

    fn outbound(&mut self, dst: SocketAddr) -> SocketAddr {
        let key = match self.mapping {
            Mapping::EndpointIndependent => (None, None),
            Mapping::AddressDependent => (Some(dst.ip()), None),
            _ => (Some(dst.ip()), Some(dst.port())),
        };
        let next = &mut self.next_port;
        let port = *self.ports.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        });
        self.sent_to.entry(port).or_default().push(dst);
        SocketAddr::new(PUBLIC_IP.parse().unwrap(), port)
    }

    fn inbound(&self, from: SocketAddr, port: u16) -> bool {
        let Some(sent) = self.sent_to.get(&port) else {
            return false;
        };
        match self.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => sent.iter().any(|d| d.ip() == from.ip()),
            Filtering::AddressAndPortDependent => sent.contains(&from),
        }
    }
}

struct Run {
    /// Simulated time from start to the results' arrival.
    results_at: Option<Duration>,
    app: ConncheckApp,
    server: Server,
    /// Bytes the client sent to / received from each server address.
    to: HashMap<SocketAddr, u64>,
    from: HashMap<SocketAddr, u64>,
}

fn run(mapping: Mapping, filtering: Filtering) -> Run {
    run_with(mapping, filtering, vec![])
}

fn run_with(mapping: Mapping, filtering: Filtering, apps: Vec<String>) -> Run {
    run_full(mapping, filtering, apps, false, Duration::ZERO)
}

/// `rebind`: the NAT forgets its mappings as soon as the check starts (the
/// client's next packets leave from a new public port).
/// `one_way`: every datagram takes this long (RTT = 2 × `one_way`).
fn run_full(
    mapping: Mapping,
    filtering: Filtering,
    apps: Vec<String>,
    rebind: bool,
    one_way: Duration,
) -> Run {
    let mut rebound = false;
    let mut results_at = None;
    let mut rng = SeededRng::new(7);
    let sid = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
    let mut sep = Endpoint::new(
        sid.clone(),
        EndpointConfig::default(),
        Box::new(SeededRng::new(8)),
        Instant::ZERO,
    );
    sep.add_interface(false);
    let mut server = Server::new(ServerConfig::default(), sid.fingerprint());
    server.enable_conncheck(ConncheckConfig {
        probe_addrs: PROBES.iter().map(|p| a(p)).collect(),
        listen: vec![a(MAIN)],
        rng: Box::new(SeededRng::new(9)),
        apps,
    });
    let cid = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let mut cep = Endpoint::new(
        cid,
        EndpointConfig {
            crypto: CryptoSettings::flash_player(),
            ..EndpointConfig::default()
        },
        Box::new(SeededRng::new(10)),
        Instant::ZERO,
    );
    cep.add_interface(false);
    let mut app = ConncheckApp::new(
        ClientConfig {
            url: "rtmfp://192.0.2.1/app".into(),
            app: "app".into(),
            candidates: vec![a(MAIN)],
            local_addrs: vec![a(PRIVATE)],
            timeout: Duration::from_secs(5),
            results_wait: Duration::from_secs(10),
        },
        Box::new(|_| {}),
    );
    let mut nat = Nat::new(mapping, filtering);
    let mut to: HashMap<SocketAddr, u64> = HashMap::new();
    let mut from: HashMap<SocketAddr, u64> = HashMap::new();
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Datagrams toward the client: (arrival, source, public port, bytes).
    let mut to_client: Vec<(Instant, SocketAddr, u16, Vec<u8>)> = Vec::new();
    // Datagrams toward the server: (arrival, destination, public source, bytes).
    let mut up: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
    let end = Instant::ZERO + Duration::from_secs(20);
    while now < end && !app.done() {
        loop {
            let mut moved = false;
            // Client side.
            if app.timeout().is_some_and(|t| t <= now) {
                app.on_timeout(&mut cep, now);
                moved = true;
            }
            cep.handle_timeout(now);
            while let Some(e) = cep.poll_event() {
                app.on_event(&mut cep, now, e);
                moved = true;
            }
            let mut out = Vec::new();
            while let Some(t) = cep.poll_transmit(now, &mut buf) {
                out.push((t.dst, buf[..t.len].to_vec()));
            }
            for (dst, data) in out {
                moved = true;
                *to.entry(dst).or_default() += data.len() as u64;
                let src = nat.outbound(dst);
                up.push((now + one_way, dst, src, data));
            }
            let (due, later): (Vec<_>, Vec<_>) = up.drain(..).partition(|u| u.0 <= now);
            up = later;
            for (_, dst, src, data) in due {
                moved = true;
                if dst == a(MAIN) {
                    sep.handle_datagram(now, 0, src, &data);
                } else if let Some(i) = PROBES.iter().position(|p| a(p) == dst)
                    && let Some(tag) = rhello_probe_tag(&data)
                {
                    server.probe_returned(&mut sep, now, i, src, tag);
                }
            }
            // Server side.
            sep.handle_timeout(now);
            if server.conncheck_timeout().is_some_and(|t| t <= now) {
                server.on_conncheck_timeout(&mut sep, now);
            }
            while let Some(e) = sep.poll_event() {
                server.handle_event(&mut sep, now, e);
                moved = true;
            }
            while server.poll_event().is_some() {}
            if rebind && !rebound && server.conncheck_stats().started == 1 {
                rebound = true;
                nat.ports.clear();
                nat.sent_to.clear();
            }
            while let Some(p) = server.poll_probe_send() {
                to_client.push((now + one_way, a(PROBES[p.via]), p.to.port(), p.bytes));
            }
            while let Some(t) = sep.poll_transmit(now, &mut buf) {
                to_client.push((now + one_way, a(MAIN), t.dst.port(), buf[..t.len].to_vec()));
            }
            let (due, later): (Vec<_>, Vec<_>) = to_client.drain(..).partition(|d| d.0 <= now);
            to_client = later;
            for (_, src, port, data) in due {
                moved = true;
                if nat.inbound(src, port) {
                    *from.entry(src).or_default() += data.len() as u64;
                    cep.handle_datagram(now, 0, src, &data);
                }
            }
            if !moved {
                break;
            }
        }
        if results_at.is_none() && app.outcome.results.is_some() {
            results_at = Some(now.saturating_since(Instant::ZERO));
        }
        now += Duration::from_millis(1);
    }
    assert!(app.done(), "the check did not finish");
    Run {
        results_at,
        app,
        server,
        to,
        from,
    }
}

#[test]
fn every_nat_kind_is_classified_like_the_stun_probe_would() {
    for m in [
        Mapping::EndpointIndependent,
        Mapping::AddressDependent,
        Mapping::AddressAndPortDependent,
    ] {
        for f in [
            Filtering::EndpointIndependent,
            Filtering::AddressDependent,
            Filtering::AddressAndPortDependent,
        ] {
            let r = run(m, f);
            assert!(
                r.app.failure().is_none(),
                "{m:?}/{f:?}: {:?}",
                r.app.failure()
            );
            let results = r.app.outcome.results.clone().expect("results");
            let v = classify_conncheck(&results);
            let want_m = if m == Mapping::EndpointIndependent {
                m
            } else {
                Mapping::Dependent
            };
            assert_eq!(v.mapping, Some(want_m), "{m:?}/{f:?}: {results:?}");
            assert_eq!(v.filtering, Some(f), "{m:?}/{f:?}: {results:?}");
            assert_eq!(v.nat, Some(true));
            assert_eq!(v.port_preserved, Some(false));
            assert!(v.inconsistencies.is_empty(), "{:?}", v.inconsistencies);
            assert_eq!(
                v.class(),
                Some(crate::nat::P2pClass::from_behaviour(want_m, f))
            );
        }
    }
}

/// To an address that has not proven it receives, the client sends at most
/// 3× what came from it (for the introduction's reply address: 3× the
/// IHello each FIHello stands for); the server sends each probe at most
/// `TRIES` times, and only to the client's session address.
#[test]
fn probes_and_answers_obey_the_3x_rule() {
    for f in [
        Filtering::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    ] {
        let r = run(Mapping::EndpointIndependent, f);
        let st = r.server.conncheck_stats();
        assert_eq!(st.started, 1);
        assert_eq!(st.results_sent, 1);
        assert!(st.ihellos_sent <= 2 * u64::from(TRIES), "{st:?}");
        assert!(st.fihellos_sent <= u64::from(TRIES), "{st:?}");
        if f == Filtering::AddressAndPortDependent {
            // Nothing got in, so every probe was sent its full count.
            assert_eq!(st.ihellos_sent, 2 * u64::from(TRIES), "{st:?}");
        }
        for p in &PROBES[..2] {
            let out = r.to.get(&a(p)).copied().unwrap_or(0);
            let got = r.from.get(&a(p)).copied().unwrap_or(0);
            assert!(
                out <= 3 * got,
                "{f:?}: {out} bytes to {p} after {got} from it"
            );
        }
        let intro_out = r.to.get(&a(PROBES[2])).copied().unwrap_or(0);
        let relayed = ihello_datagram_len(34, 32) as u64;
        assert!(intro_out > 0, "the introduction was answered");
        assert!(
            intro_out <= 3 * relayed * st.fihellos_sent,
            "{intro_out} bytes to the reply address after {} FIHellos",
            st.fihellos_sent
        );
    }
}

/// `--probe-app`: clients of other apps are not probed at all.
#[test]
fn clients_of_other_apps_cost_nothing() {
    let r = run_with(
        Mapping::EndpointIndependent,
        Filtering::EndpointIndependent,
        vec!["conncheck".into()],
    );
    assert!(r.app.outcome.results.is_none());
    assert!(r.app.outcome.no_results);
    assert_eq!(r.server.conncheck_stats(), Default::default());
    for p in PROBES {
        assert_eq!(r.from.get(&a(p)), None, "nothing came from {p}");
    }
    let r = run_with(
        Mapping::EndpointIndependent,
        Filtering::EndpointIndependent,
        vec!["app".into()],
    );
    assert!(r.app.outcome.results.is_some());
}

/// A NAT rebinding mid-check: the server follows the client to its new
/// address (the endpoint's mobility check), probes it there, and reports
/// the new public address.
#[test]
fn probes_follow_a_client_whose_address_changes() {
    let r = run_full(
        Mapping::EndpointIndependent,
        Filtering::EndpointIndependent,
        vec![],
        true,
        Duration::ZERO,
    );
    let results = r.app.outcome.results.clone().expect("results");
    let first = r.app.outcome.public_address.expect("connect reply address");
    let now = results.public_address.expect("publicAddress");
    assert_ne!(first, now, "the results name the new address");
    assert!(
        r.app.outcome.address_changed,
        "AddressChange.Notify reached the client"
    );
    let mut v = classify_conncheck(&results);
    crate::client::conncheck::check_outcome(&r.app.outcome, &mut v);
    assert!(v.inconsistencies.is_empty(), "{:?}", v.inconsistencies);
    let v = classify_conncheck(&results);
    assert_eq!(
        v.filtering,
        Some(Filtering::EndpointIndependent),
        "{results:?}"
    );
}

/// Issue 10's speed goal, in simulated time: on a 50 ms RTT path with no
/// loss the whole check (handshake, connect, probes, results) ends within
/// 2 s, also behind a NAT that lets no probe in (the server then waits out
/// its 60 ms + 5 × ERTO schedule, as conncheck does).
#[test]
fn check_completes_within_2s_at_50ms_rtt() {
    for f in [
        Filtering::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    ] {
        let r = run_full(
            Mapping::EndpointIndependent,
            f,
            vec![],
            false,
            Duration::from_millis(25),
        );
        let v = classify_conncheck(r.app.outcome.results.as_ref().expect("results"));
        assert_eq!(v.filtering, Some(f));
        let t = r.results_at.expect("results arrived");
        eprintln!("{f:?}: results after {t:?} of simulated time at 50 ms RTT");
        assert!(t < Duration::from_secs(2), "{f:?}: {t:?}");
    }
}
