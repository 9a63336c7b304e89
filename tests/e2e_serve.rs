//! `rtmfp serve` end to end: the real binary on loopback, driven by a small
//! client built from the library (Endpoint + std UDP sockets). Every wait
//! has a hard deadline; only loopback addresses are used.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant as StdInstant};

use rtmfp::flash::message::encode_command;
use rtmfp::flash::{Body, Command, Connect, Message, TcMetadata, UserControl, Value};
use rtmfp::net::Clock;
use rtmfp::proto::crypto::{
    CryptoSettings, DhGroup, Identity, epd_for_peer, epd_for_uri, peer_id_hex,
};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, MAX_DATAGRAM, SessionHandle};
use rtmfp::proto::flow::{FlowEvent, Priority, WriteOptions};
use rtmfp::proto::session::{CloseReason, FiHelloMode};
use rtmfp::proto::{Rng, SeededRng};
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(10);

/// The server process; killed on drop so a failing test leaves nothing behind.
struct ServerProc {
    child: Child,
    lines: mpsc::Receiver<Json>,
    seen: Vec<Json>,
    addr: SocketAddr,
    fingerprint: String,
}

impl ServerProc {
    fn start(listen: &str) -> Self {
        Self::start_with(listen, &[])
    }

    fn start_with(listen: &str, extra: &[&str]) -> Self {
        let mut child = Proc::new(env!("CARGO_BIN_EXE_rtmfp"))
            .args(["-q", "serve", "--ephemeral", "--json", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Json = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut s = ServerProc {
            child,
            lines: rx,
            seen: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
            fingerprint: String::new(),
        };
        let l = s.wait_event("listening", WAIT).expect("listening event");
        s.addr = l["addr"].as_str().unwrap().parse().unwrap();
        s.fingerprint = l["fingerprint"].as_str().unwrap().to_owned();
        s
    }

    fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    /// The first event of this kind (already seen or arriving within `d`).
    fn wait_event(&mut self, kind: &str, d: Duration) -> Option<Json> {
        let end = StdInstant::now() + d;
        loop {
            if let Some(v) = self.seen.iter().find(|v| v["event"] == kind) {
                return Some(v.clone());
            }
            let left = end.checked_duration_since(StdInstant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => return None,
            }
        }
    }

    fn sigterm(&self) {
        let st = Proc::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn wait_exit(&mut self, d: Duration) -> Option<i32> {
        let end = StdInstant::now() + d;
        while StdInstant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A library endpoint on a std UDP socket.
struct Client {
    ep: Endpoint,
    sock: UdpSocket,
    clock: Clock,
    events: Vec<Event>,
}

impl Client {
    fn new(bind: &str, seed: u64, flash: bool, fihello: FiHelloMode) -> Self {
        let mut rng = SeededRng::new(seed);
        let groups: &[DhGroup] = if flash { &[DhGroup::G2] } else { &DhGroup::ALL };
        let id = Identity::generate_static(groups, None, false, &mut rng).unwrap();
        Self::with_identity(bind, seed, id, flash, fihello)
    }

    fn with_identity(
        bind: &str,
        seed: u64,
        id: Identity,
        flash: bool,
        fihello: FiHelloMode,
    ) -> Self {
        let rng = SeededRng::new(seed);
        let cfg = EndpointConfig {
            crypto: if flash {
                CryptoSettings::flash_player()
            } else {
                CryptoSettings::default()
            },
            fihello_mode: fihello,
            ..EndpointConfig::default()
        };
        let clock = Clock::new();
        let mut ep = Endpoint::new(id, cfg, Box::new(rng), clock.now());
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_nonblocking(true).unwrap();
        ep.add_interface(sock.local_addr().unwrap().is_ipv6());
        Client {
            ep,
            sock,
            clock,
            events: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn peer_id(&self) -> [u8; 32] {
        self.ep.identity().fingerprint()
    }

    /// One round of I/O; true if anything happened.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.clock.now();
        self.ep.handle_timeout(now);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            self.ep
                .handle_datagram(self.clock.now(), 0, from, &buf[..n]);
            moved = true;
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
            moved = true;
        }
        while let Some(t) = self.ep.poll_transmit(self.clock.now(), &mut buf) {
            let _ = self.sock.send_to(&buf[..t.len], t.dst);
            moved = true;
        }
        moved
    }
}

/// Pumps all clients until `done` or the deadline; returns whether done.
fn pump(
    clients: &mut [&mut Client],
    d: Duration,
    mut done: impl FnMut(&[&mut Client]) -> bool,
) -> bool {
    let end = StdInstant::now() + d;
    loop {
        let mut moved = false;
        for c in clients.iter_mut() {
            moved |= c.step();
        }
        if done(clients) {
            return true;
        }
        if StdInstant::now() >= end {
            return false;
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn opened(c: &Client) -> Option<SessionHandle> {
    c.events.iter().find_map(|e| match e {
        Event::Opened { session, .. } => Some(*session),
        _ => None,
    })
}

fn messages(c: &Client) -> Vec<Vec<u8>> {
    c.events
        .iter()
        .filter_map(|e| match e {
            Event::Flow {
                event: FlowEvent::Message { data, .. },
                ..
            } => Some(data.clone()),
            _ => None,
        })
        .collect()
}

fn connect_result(c: &Client) -> Option<Command> {
    messages(c)
        .iter()
        .find_map(|m| match Message::parse(m).ok()?.body {
            Body::Command { command, .. } if command.name == "_result" => Some(command),
            _ => None,
        })
}

/// Handshake, control flow, `connect`; waits for the `_result`.
fn connect(c: &mut Client, server: SocketAddr, app: &str) -> (SessionHandle, u64) {
    let url = format!("rtmfp://{server}/{app}");
    let now = c.clock.now();
    c.ep.connect(now, &epd_for_uri(&url), &[server]).unwrap();
    assert!(
        pump(&mut [c], WAIT, |cs| opened(cs[0]).is_some()),
        "no session"
    );
    let h = opened(c).unwrap();
    let f =
        c.ep.transport(h)
            .unwrap()
            .open_flow(&TcMetadata::new(0).to_bytes(), None, Priority::Immediate)
            .unwrap();
    let cmd = Connect::flash(app, url, "LNX 32,0,0,0").to_command();
    send(c, h, f, &cmd);
    assert!(
        pump(&mut [c], WAIT, |cs| connect_result(cs[0]).is_some()),
        "no connect _result"
    );
    (h, f)
}

fn send(c: &mut Client, h: SessionHandle, f: u64, cmd: &Command) {
    c.ep.transport(h)
        .unwrap()
        .write(f, &encode_command(cmd).unwrap(), WriteOptions::default())
        .unwrap();
    c.ep.wake(h);
}

#[test]
fn connect_result_fields() {
    let mut srv = ServerProc::start("127.0.0.1:0");
    let mut c = Client::new("127.0.0.1:0", 1, false, FiHelloMode::Ignore);
    connect(&mut c, srv.addr, "live");
    let r = connect_result(&c).unwrap();
    assert_eq!(r.transaction_id, 1.0);
    let info = r.info_object().unwrap();
    let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(s("level").as_deref(), Some("status"));
    assert_eq!(s("code").as_deref(), Some("NetConnection.Connect.Success"));
    assert!(s("description").is_some());
    assert_eq!(s("connectionID"), Some(peer_id_hex(&c.peer_id())));
    assert_eq!(
        s("serverFingerprint").as_deref(),
        Some(srv.fingerprint.as_str())
    );
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(3.0)
    );
    // Set Keepalive follows (15 s server, 10 s peer by default).
    assert!(pump(&mut [&mut c], WAIT, |cs| messages(cs[0]).iter().any(
        |m| {
            matches!(
                Message::parse(m).map(|m| m.body),
                Ok(Body::UserControl(UserControl::SetKeepalive {
                    server_ms: 15_000,
                    peer_ms: 10_000
                }))
            )
        }
    )));
    let ev = srv.wait_event("connect", WAIT).expect("connect event");
    assert_eq!(ev["app"], "live");
    assert_eq!(ev["peer_id"], peer_id_hex(&c.peer_id()));
    assert_eq!(ev["addr"], c.addr().to_string());
    assert!(srv.wait_event("session_opened", WAIT).is_some());
}

#[test]
fn introduction_uses_set_peer_info() {
    let mut srv = ServerProc::start("127.0.0.1:0");
    let mut b = Client::new("127.0.0.1:0", 2, true, FiHelloMode::SendRHello);
    let mut a = Client::new("127.0.0.1:0", 3, true, FiHelloMode::Ignore);
    let (hb, fb) = connect(&mut b, srv.addr, "live");
    let cmd = Command::new("setPeerInfo", 0.0)
        .with_args([Value::str("127.0.0.9:4444"), Value::str("bogus")]);
    send(&mut b, hb, fb, &cmd);
    pump(&mut [&mut b], Duration::from_millis(200), |_| false);
    let spi = srv
        .wait_event("set_peer_info", WAIT)
        .expect("set_peer_info event");
    assert_eq!(spi["addresses"], serde_json::json!(["127.0.0.9:4444"]));

    // A, connected to the same app (introductions are scoped to it), asks
    // the server for B by peer ID: Redirect + forwarded IHello, and A ends
    // up in a direct session with B.
    let _ = connect(&mut a, srv.addr, "live");
    let b_id = b.peer_id();
    let now = a.clock.now();
    a.ep.connect(now, &epd_for_peer(&b_id), &[srv.addr])
        .unwrap();
    let b_addr = b.addr();
    let ok = pump(&mut [&mut a, &mut b], WAIT, |cs| {
        cs[0].events.iter().any(|e| {
            matches!(e, Event::Opened { peer_id, far_addr, .. } if *peer_id == b_id && *far_addr == b_addr)
        })
    });
    assert!(ok, "no direct session A->B: {:?}", a.events);
    let intro = srv
        .wait_event("introduction", WAIT)
        .expect("introduction event");
    assert_eq!(intro["target"], peer_id_hex(&b_id));
    assert_eq!(intro["addresses"], 2, "observed + one reported");
}

#[test]
fn flood_of_garbage_leaves_it_answering() {
    let mut srv = ServerProc::start("127.0.0.1:0");
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = SeededRng::new(7);
    // Random datagrams of every size class.
    for i in 0..3000usize {
        let len = match i % 4 {
            0 => (rng.next_u32() % 24) as usize,
            1 => (rng.next_u32() % 200) as usize,
            2 => (rng.next_u32() % 1500) as usize,
            _ => 4 + 16 * (1 + (rng.next_u32() % 8) as usize),
        };
        let mut d = vec![0u8; len];
        rng.fill(&mut d);
        let _ = flood.send_to(&d, srv.addr);
    }
    // Every truncation of a real IHello, and bit-flipped copies.
    let mut probe = Client::new("127.0.0.1:0", 8, true, FiHelloMode::Ignore);
    let now = probe.clock.now();
    probe
        .ep
        .connect(now, &epd_for_uri("rtmfp://x/live"), &[srv.addr])
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    probe.ep.handle_timeout(probe.clock.now());
    let t = probe
        .ep
        .poll_transmit(probe.clock.now(), &mut buf)
        .expect("an IHello to start with");
    let ihello = buf[..t.len].to_vec();
    for cut in 0..ihello.len() {
        let _ = flood.send_to(&ihello[..cut], srv.addr);
        let mut flipped = ihello.clone();
        flipped[cut] ^= 0x40;
        let _ = flood.send_to(&flipped, srv.addr);
    }
    let mut c = Client::new("127.0.0.1:0", 9, true, FiHelloMode::Ignore);
    connect(&mut c, srv.addr, "after-flood");
    assert_eq!(
        connect_result(&c)
            .unwrap()
            .info_object()
            .unwrap()
            .get("code")
            .and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    // The flood did reach it and was dropped, not half-accepted.
    srv.sigterm();
    pump(&mut [&mut c], Duration::from_millis(500), |_| false);
    let st = srv.wait_event("stopped", WAIT).expect("stopped event");
    assert!(st["rx_datagrams"].as_u64().unwrap() > 1000, "{st}");
    assert!(st["dropped_datagrams"].as_u64().unwrap() > 1000, "{st}");
    assert_eq!(st["sessions_opened"], 1, "{st}");
}

#[test]
fn sigterm_closes_sessions_in_order() {
    let mut srv = ServerProc::start("127.0.0.1:0");
    let mut c = Client::new("127.0.0.1:0", 10, true, FiHelloMode::Ignore);
    let (h, _) = connect(&mut c, srv.addr, "live");
    srv.sigterm();
    let closed = pump(&mut [&mut c], Duration::from_secs(5), |cs| {
        cs[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed { session, .. } if *session == h))
    });
    assert!(closed, "no close from the server");
    let reason = c.events.iter().find_map(|e| match e {
        Event::Closed { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(reason, Some(CloseReason::Remote));
    // tcserver-style notice before the close.
    let notified = messages(&c)
        .iter()
        .any(|m| match Message::parse(m).map(|m| m.body) {
            Ok(Body::Command { command, .. }) => {
                command.name == "onStatus"
                    && command
                        .info_object()
                        .and_then(|i| i.get("code"))
                        .and_then(Value::as_str)
                        == Some("NetConnection.Shutdown.Notify")
            }
            _ => false,
        });
    assert!(notified, "no Shutdown.Notify before the close");
    // Keep answering so the server's close handshake completes.
    pump(&mut [&mut c], Duration::from_millis(300), |_| false);
    assert_eq!(srv.wait_exit(Duration::from_secs(8)), Some(0));
    srv.drain();
    assert!(srv.seen.iter().any(|v| v["event"] == "shutdown"));
    let stopped = srv
        .seen
        .iter()
        .find(|v| v["event"] == "stopped")
        .expect("stopped");
    assert_eq!(stopped["sessions_left"], 0);
}

#[test]
fn ipv6_loopback() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let srv = ServerProc::start("[::1]:0");
    assert!(srv.addr.is_ipv6());
    let mut c = Client::new("[::1]:0", 11, true, FiHelloMode::Ignore);
    connect(&mut c, srv.addr, "v6");
}

#[test]
fn identity_file_keeps_fingerprint_and_serves_flash_clients() {
    let dir = std::env::temp_dir().join(format!("rtmfp-e2e-id-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = dir.join("nested").join("server.key");
    // An explicit --identity's directory must exist (none is created silently).
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let key_s = key.to_str().unwrap().to_owned();
    let start = || {
        let mut child = Proc::new(env!("CARGO_BIN_EXE_rtmfp"))
            .args([
                "-q",
                "serve",
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--identity",
                &key_s,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut get = |kind: &str| loop {
            let v: Json = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            if v["event"] == kind {
                return v;
            }
        };
        let id = get("identity");
        let l = get("listening");
        (
            child,
            id,
            l["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap(),
        )
    };
    let (mut first, id1, _) = start();
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        id1["source"].as_str().unwrap().starts_with("created"),
        "{id1}"
    );
    let (mut second, id2, addr) = start();
    assert!(
        id2["source"].as_str().unwrap().starts_with("loaded"),
        "{id2}"
    );
    assert_eq!(id1["fingerprint"], id2["fingerprint"]);
    // A static server keyed by a Flash-class client (group 2, no HMAC):
    // the layout librtmfp parses, and it must key.
    let mut c = Client::new("127.0.0.1:0", 12, true, FiHelloMode::Ignore);
    connect(&mut c, addr, "live");
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bind_and_identity_errors_exit_1() {
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let out = Proc::new(env!("CARGO_BIN_EXE_rtmfp"))
        .args(["serve", "--ephemeral", "--listen", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));

    let dir = std::env::temp_dir().join(format!("rtmfp-e2e-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("bad.key");
    std::fs::write(&key, b"not a key").unwrap();
    let out = Proc::new(env!("CARGO_BIN_EXE_rtmfp"))
        .args(["serve", "--listen", "127.0.0.1:0", "--identity"])
        .arg(&key)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad identity file"));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resident memory per idle NetConnection (handshake, control flows,
/// connect done, then silence). Load, so not run by default:
/// `RTMFP_MEM_SESSIONS=10000 cargo test --release --test e2e_serve -- --ignored --nocapture`.
#[test]
#[ignore = "load test; run explicitly"]
fn idle_session_memory() {
    let n: usize = std::env::var("RTMFP_MEM_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let srv = ServerProc::start_with("127.0.0.1:0", &["--handshake-rate", "0"]);
    let pid = srv.child.id();
    // One identity for all clients (each has its own address, so the
    // server keeps them all); key generation is not what we measure.
    let id =
        Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(99)).unwrap();
    let mut clients: Vec<Client> = Vec::new();
    // Warm up the allocator and the server's tables before the baseline.
    let rss0 = rss_kib(pid);
    let started = StdInstant::now();
    for batch in 0..n.div_ceil(250) {
        let mut fresh: Vec<Client> = (0..250.min(n - batch * 250))
            .map(|i| {
                Client::with_identity(
                    "127.0.0.1:0",
                    (batch * 250 + i) as u64,
                    id.clone(),
                    true,
                    FiHelloMode::Ignore,
                )
            })
            .collect();
        let url = format!("rtmfp://{}/live", srv.addr);
        for c in &mut fresh {
            let now = c.clock.now();
            c.ep.connect(now, &epd_for_uri(&url), &[srv.addr]).unwrap();
        }
        let mut refs: Vec<&mut Client> = fresh.iter_mut().collect();
        assert!(pump(&mut refs, Duration::from_secs(60), |cs| cs
            .iter()
            .all(|c| opened(c).is_some())));
        for c in &mut fresh {
            let h = opened(c).unwrap();
            let f =
                c.ep.transport(h)
                    .unwrap()
                    .open_flow(&TcMetadata::new(0).to_bytes(), None, Priority::Immediate)
                    .unwrap();
            send(c, h, f, &Connect::new("live", url.clone()).to_command());
        }
        let mut refs: Vec<&mut Client> = fresh.iter_mut().collect();
        assert!(pump(&mut refs, Duration::from_secs(60), |cs| cs
            .iter()
            .all(|c| connect_result(c).is_some())));
        clients.extend(fresh);
    }
    let setup = started.elapsed();
    // Let acks settle.
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    pump(&mut refs, Duration::from_millis(500), |_| false);
    let rss1 = rss_kib(pid);
    let per = (rss1.saturating_sub(rss0)) * 1024 / n as u64;
    println!(
        "{n} idle NetConnections: server RSS {rss0} KiB -> {rss1} KiB, {per} bytes per session; setup {setup:?}"
    );
}
