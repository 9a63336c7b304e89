//! The attack suite against the real `rtmfp serve` on loopback, from several
//! source addresses (127.0.0.0/8, and [::1] when the kernel has it): IHello
//! floods of every shape, cookie replays from other addresses with many
//! IIKeyings per datagram, half-open piles, and a legitimate client during
//! each. Every case prints its figures (bytes out per byte in to the
//! unverified address, connect time, SIGTERM latency); pass/fail is on
//! counts and ratios only. Loops are bounded; the heavy version (many more
//! packets, RSS over 10,000 sessions) is `cargo bench --bench attack`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant as StdInstant};

use rtmfp::proto::SeededRng;
use rtmfp::proto::crypto::{
    self, CryptoSettings, DhGroup, Identity, InitiatorKeying, PacketCipher,
};
use rtmfp::proto::endpoint::MAX_DATAGRAM;
use rtmfp::proto::wire::chunk::{self, Chunk, Chunks};
use rtmfp::proto::wire::header::{Mode, PacketHeader};
use rtmfp::proto::wire::{WireError, Writer};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

struct Serve {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    fn start(listen: &str, extra: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--ephemeral", "--json", "--listen", listen])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned (killed on drop) before anything can panic.
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines: rx,
        };
        loop {
            let line = serve
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("serve reports its address");
            let v: Json = serde_json::from_str(&line).unwrap();
            if v["event"] == "listening" {
                serve.addr = v["addr"].as_str().unwrap().parse().unwrap();
                return serve;
            }
        }
    }

    /// SIGTERM; returns the time to exit and the exit status.
    fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let t = StdInstant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (t.elapsed(), s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        (t.elapsed(), self.child.wait().unwrap())
    }

    fn events(&self) -> Vec<Json> {
        self.lines
            .try_iter()
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtmfp connect --json` to `url`; (exit code, JSON lines, elapsed).
fn connect(url: &str, extra: &[&str]) -> (i32, Vec<Json>, Duration) {
    let t = StdInstant::now();
    let out = Command::new(BIN)
        .args(["connect", "--json", "--timeout", "10s", url])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run rtmfp connect");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code().unwrap_or(-1), lines, t.elapsed())
}

fn plain(body: impl FnOnce(&mut Writer) -> Result<(), WireError>) -> Vec<u8> {
    let mut buf = vec![0u8; 8000];
    let mut w = Writer::new(&mut buf);
    PacketHeader {
        time_critical: false,
        time_critical_reverse: false,
        mode: Mode::Startup,
        timestamp: Some(0),
        timestamp_echo: None,
    }
    .encode(&mut w)
    .unwrap();
    body(&mut w).unwrap();
    let n = w.len();
    buf.truncate(n);
    buf
}

fn seal(p: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    let n = PacketCipher::default_key()
        .seal([0; 4], p, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn ihello(epd: &[u8], tag: &[u8]) -> Vec<u8> {
    seal(&plain(|w| chunk::IHello { epd, tag }.encode(w)))
}

/// A socket on a loopback source address of its own (an attacker, or the
/// victim of a spoofed flood: on loopback both are just other addresses).
fn source(ip: &str) -> Option<UdpSocket> {
    let s = UdpSocket::bind(format!("{ip}:0")).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    Some(s)
}

/// Everything that arrives on `s` until it has been quiet for 300 ms
/// (bounded: at most 100,000 datagrams).
fn drain(s: &UdpSocket) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while got.len() < 100_000 {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    got
}

fn ratio(out: usize, inb: usize) -> f64 {
    out as f64 / inb.max(1) as f64
}

/// UDP/IP overhead, so the wire ratio can be printed next to the payload one.
fn wire(bytes: usize, datagrams: usize, v6: bool) -> usize {
    bytes + datagrams * if v6 { 48 } else { 28 }
}

struct Tally {
    sent: usize,
    sent_dgrams: usize,
    recv: usize,
    recv_dgrams: usize,
}

fn flood(target: SocketAddr, s: &UdpSocket, shapes: &[Vec<u8>], rounds: usize) -> Tally {
    let mut t = Tally {
        sent: 0,
        sent_dgrams: 0,
        recv: 0,
        recv_dgrams: 0,
    };
    for _ in 0..rounds {
        for d in shapes {
            if s.send_to(d, target).is_ok() {
                t.sent += d.len();
                t.sent_dgrams += 1;
            }
        }
    }
    for d in drain(s) {
        t.recv += d.len();
        t.recv_dgrams += 1;
    }
    t
}

fn shapes(rng: &mut SeededRng, url: &str) -> Vec<Vec<u8>> {
    let epd = crypto::epd_for_uri(url);
    let big = crypto::epd_for_uri(&format!("{url}/{}", "x".repeat(1200)));
    let mut v = vec![
        ihello(&epd, &[]),
        ihello(&epd, &[1]),
        ihello(&epd, &[2; 16]),
        ihello(&[0x01, 0x0a], &[3; 16]),
        ihello(&big, &[4; 16]),
    ];
    for _ in 0..3 {
        let mut peer = [0u8; 32];
        rtmfp::proto::Rng::fill(rng, &mut peer);
        v.push(ihello(&crypto::epd_for_peer(&peer), &[5; 16]));
    }
    v
}

/// IHello floods of every shape from eight 127.x sources (to the server,
/// these are the victims of a spoofed flood): each gets at most 3× what
/// "it" sent, by payload and by wire bytes; a legitimate client connects
/// during and after; SIGTERM ends the server promptly.
#[test]
fn ihello_floods_are_never_amplified() {
    let mut serve = Serve::start("127.0.0.1:0", &[]);
    let url = format!("rtmfp://{}/app", serve.addr);
    let mut rng = SeededRng::new(1);
    let shapes = shapes(&mut rng, &url);
    let mut floods = Vec::new();
    for k in 2..10 {
        let ip = format!("127.0.{k}.{k}");
        let s = source(&ip).expect("loopback has all of 127/8");
        let shapes = shapes.clone();
        let target = serve.addr;
        floods.push(std::thread::spawn(move || {
            (ip, flood(target, &s, &shapes, 40))
        }));
    }
    let (code, lines, took) = connect(&url, &[]);
    let legit_during = code == 0;
    let mut worst: f64 = 0.0;
    for f in floods {
        let (ip, t) = f.join().unwrap();
        let r = ratio(t.recv, t.sent);
        let rw = ratio(
            wire(t.recv, t.recv_dgrams, false),
            wire(t.sent, t.sent_dgrams, false),
        );
        println!(
            "ihello flood from {ip}: {} datagrams, {} B in, {} B out: {r:.2}x payload, {rw:.2}x wire",
            t.sent_dgrams, t.sent, t.recv
        );
        assert!(r <= 3.0 && rw <= 3.0, "{ip}: {r:.2}x");
        assert!(
            t.recv_dgrams <= t.sent_dgrams,
            "one answer per datagram at most"
        );
        worst = worst.max(r);
    }
    println!(
        "worst ratio {worst:.2}x; legitimate connect during the flood: exit {code} in {took:?}"
    );
    assert!(legit_during, "connect during the flood failed: {lines:?}");
    let (code, _, took) = connect(&url, &[]);
    println!("legitimate connect after the flood: exit {code} in {took:?}");
    assert_eq!(code, 0);
    let (latency, status) = serve.terminate();
    println!("SIGTERM latency {latency:?}");
    assert!(status.success());
}

/// The same on [::1], where the kernel has IPv6.
#[test]
fn ipv6_ihello_flood_is_never_amplified() {
    let Some(s) = source("[::1]") else {
        println!("no IPv6 loopback; skipped");
        return;
    };
    let serve = Serve::start("[::1]:0", &[]);
    let url = format!("rtmfp://{}/app", serve.addr);
    let shapes = shapes(&mut SeededRng::new(2), &url);
    let t = flood(serve.addr, &s, &shapes, 40);
    let r = ratio(t.recv, t.sent);
    let rw = ratio(
        wire(t.recv, t.recv_dgrams, true),
        wire(t.sent, t.sent_dgrams, true),
    );
    println!(
        "ipv6 ihello flood: {} B in, {} B out: {r:.2}x payload, {rw:.2}x wire",
        t.sent, t.recv
    );
    assert!(r <= 3.0 && rw <= 3.0);
    let (code, lines, _) = connect(&url, &[]);
    assert_eq!(code, 0, "{lines:?}");
}

fn rhello_of(d: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    let p = PacketCipher::default_key().open(d, &mut out).ok()?.to_vec();
    let (_, area) = PacketHeader::decode(&p).ok()?;
    Chunks::new(area).find_map(|c| match c {
        Chunk::RHello(r) => Some((r.cookie.to_vec(), r.certificate.to_vec())),
        _ => None,
    })
}

/// IIKeyings (15 per datagram) with valid cookies and valid group-2 keys:
/// replayed from other addresses they get at most one Cookie Change per
/// datagram within 3×; sent from their own addresses (many ports, one
/// source) they pile up half-open sessions only to the per-prefix cap,
/// while a legitimate client connects.
#[test]
fn cookie_replays_and_half_open_piles() {
    let serve = Serve::start("127.0.0.1:0", &["--handshake-rate", "0"]);
    let url = format!("rtmfp://{}/app", serve.addr);
    let client =
        Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(3)).unwrap();
    let cert = client.certificate().to_vec();
    let hello = ihello(&[0x01, 0x0a], &[7; 16]);
    let mut replay_in = 0;
    let mut replay_out = 0;
    let mut replay_dgrams = (0, 0);
    let mut keyed = 0;
    for port in 0..40 {
        let owner = source("127.0.20.1").unwrap();
        owner.send_to(&hello, serve.addr).unwrap();
        let Some((cookie, rcert)) = drain(&owner).first().and_then(|d| rhello_of(d)) else {
            continue;
        };
        let mut rng = SeededRng::new(port);
        let ik = InitiatorKeying::new(&client, &CryptoSettings::flash_player(), &rcert, &mut rng)
            .unwrap();
        let packed = seal(&plain(|w| {
            for i in 0..15u8 {
                chunk::IIKeying {
                    isid: [0, 0, port as u8 + 1, i + 1],
                    cookie: &cookie,
                    certificate: &cert,
                    skic: ik.skic(),
                    signature: b"X",
                    signed: &[],
                }
                .encode(w)?;
            }
            Ok(())
        }));
        // From elsewhere: a replay.
        let thief = source("127.0.21.1").unwrap();
        thief.send_to(&packed, serve.addr).unwrap();
        replay_in += packed.len();
        replay_dgrams.0 += 1;
        for d in drain(&thief) {
            replay_out += d.len();
            replay_dgrams.1 += 1;
        }
        // From its owner: a half-open session (at most one per datagram).
        owner.send_to(&packed, serve.addr).unwrap();
        keyed += drain(&owner).len();
    }
    let r = ratio(replay_out, replay_in);
    println!(
        "cookie replays: {} datagrams of 15 IIKeyings, {} answers, {r:.2}x; half-open pile from one source: {keyed} keyed of 40",
        replay_dgrams.0, replay_dgrams.1
    );
    assert!(r <= 3.0);
    assert!(replay_dgrams.1 <= replay_dgrams.0);
    assert!(keyed <= 40);
    let (code, lines, took) = connect(&url, &[]);
    println!("legitimate connect beside the pile: exit {code} in {took:?}");
    assert_eq!(code, 0, "{lines:?}");
    drop(serve.events());
}

/// A client refused for capacity learns it plainly: kind "server_full".
#[test]
fn full_server_says_so() {
    let serve = Serve::start(
        "127.0.0.1:0",
        &["--max-sessions", "1", "--handshake-rate", "0"],
    );
    let url = format!("rtmfp://{}/app", serve.addr);
    let mut holder = Command::new(BIN)
        .args(["connect", "--json", "--sessions", "1", "--hold", &url])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the server has one connection.
    let mut connected = false;
    for _ in 0..100 {
        if serve.events().iter().any(|e| e["event"] == "connect") {
            connected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(connected, "the holder connected");
    let (code, lines, _) = connect(&url, &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    let err = lines
        .iter()
        .find(|l| l["type"] == "error")
        .cloned()
        .unwrap_or_default();
    println!("refused client: exit {code}, {err}");
    assert_eq!(err["kind"], "server_full", "{lines:?}");
    assert_eq!(code, 5);
    let counts: HashMap<String, usize> = HashMap::new();
    drop(counts);
}

/// RIKeyings (one per datagram here) in the answers on `s`.
fn rikeyings(answers: &[Vec<u8>]) -> usize {
    answers
        .iter()
        .filter(|d| {
            let mut out = vec![0u8; MAX_DATAGRAM];
            let Ok(p) = PacketCipher::default_key().open(d, &mut out) else {
                return false;
            };
            let Ok((_, area)) = PacketHeader::decode(p) else {
                return false;
            };
            Chunks::new(area).any(|c| matches!(c, Chunk::RIKeying(_)))
        })
        .count()
}

/// Everything that arrives on any of `socks` until all have been quiet for
/// 500 ms (bounded: 30 s), per socket.
fn drain_all(socks: &[UdpSocket]) -> Vec<Vec<Vec<u8>>> {
    let mut got = vec![Vec::new(); socks.len()];
    let mut buf = vec![0u8; 65536];
    for s in socks {
        s.set_nonblocking(true).unwrap();
    }
    let start = StdInstant::now();
    let mut quiet = StdInstant::now();
    while quiet.elapsed() < Duration::from_millis(500) && start.elapsed() < Duration::from_secs(30)
    {
        let mut any = false;
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                got[i].push(buf[..n].to_vec());
                any = true;
            }
        }
        if any {
            quiet = StdInstant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    got
}

/// IIKeying floods with valid cookies and valid public keys, at each DH
/// group, from one source prefix per group: 20 sockets each get a cookie,
/// then all send their IIKeying at once. Each datagram gets at most one
/// answer, and the DH work the server does for them (RIKeyings, weighted
/// by group cost) stays within the keying budget plus its one-second burst
/// (20 group-16 keyings asked for, a budget that affords 1 a second); a
/// legitimate client connects afterwards. The bound only loosens if the
/// machine is slow.
#[test]
fn iikeying_floods_with_valid_keys_stay_within_the_keying_budget() {
    const BUDGET: u32 = 20;
    const PER_GROUP: usize = 20;
    let budget = BUDGET.to_string();
    let serve = Serve::start(
        "127.0.0.1:0",
        &["--handshake-rate", "0", "--keying-budget", &budget],
    );
    let url = format!("rtmfp://{}/app", serve.addr);
    // Padded like our client's, so the answer may carry the full
    // certificate with every group.
    let hello = seal(&plain(|w| {
        chunk::IHello {
            epd: &[0x01, 0x0a],
            tag: &[9; 16],
        }
        .encode(w)?;
        let pad = 413usize.saturating_sub(w.len());
        w.fill(0xff, pad)
    }));
    for (k, group) in DhGroup::ALL.into_iter().rev().enumerate() {
        let ip = format!("127.0.{}.1", 40 + k);
        let client =
            Identity::generate_static(&[group], None, false, &mut SeededRng::new(k as u64))
                .unwrap();
        let cert = client.certificate().to_vec();
        let settings = CryptoSettings {
            groups: vec![group],
            ..CryptoSettings::preferred()
        };
        // A fresh port each: a fresh cookie, so no answer comes from a cache.
        let owners: Vec<UdpSocket> = (0..PER_GROUP).map(|_| source(&ip).unwrap()).collect();
        let mut cookies = Vec::new();
        for o in &owners {
            o.send_to(&hello, serve.addr).unwrap();
            let mut buf = vec![0u8; 65536];
            let (n, _) = o.recv_from(&mut buf).expect("an RHello");
            cookies.push(rhello_of(&buf[..n]).expect("an RHello"));
        }
        let ik = InitiatorKeying::new(&client, &settings, &cookies[0].1, &mut SeededRng::new(9))
            .unwrap();
        assert_eq!(ik.group(), group);
        // The previous group's flood emptied the budget: let it fill (the
        // burst is one second's worth).
        std::thread::sleep(Duration::from_millis(1100));
        let started = StdInstant::now();
        for (i, (o, (cookie, _))) in owners.iter().zip(&cookies).enumerate() {
            let d = seal(&plain(|w| {
                chunk::IIKeying {
                    isid: [0, 0, k as u8 + 1, i as u8 + 1],
                    cookie,
                    certificate: &cert,
                    skic: ik.skic(),
                    signature: b"X",
                    signed: &[],
                }
                .encode(w)
            }));
            o.send_to(&d, serve.addr).unwrap();
        }
        let got = drain_all(&owners);
        let elapsed = started.elapsed().as_secs_f64();
        let answers: usize = got.iter().map(Vec::len).sum();
        let keyed: usize = got.iter().map(|g| rikeyings(g)).sum();
        let cost = f64::from(rtmfp::proto::endpoint::keying_cost(u64::from(group.id())));
        let allowed = f64::from(BUDGET) * (1.0 + elapsed);
        println!(
            "iikeying flood, group {}: {PER_GROUP} datagrams with valid keys, {answers} answers, {keyed} keyed \
             (cost {cost} each; budget {BUDGET}/s affords {:.1} in {elapsed:.1} s with the burst)",
            group.id(),
            allowed / cost
        );
        assert!(
            got.iter().all(|g| g.len() <= 1),
            "one answer per datagram at most"
        );
        assert!(keyed as f64 * cost <= allowed, "{keyed} keyed");
        assert!(keyed > 0, "the budget lets some through");
    }
    let (code, lines, took) = connect(&url, &["--dh-group", "2"]);
    println!("legitimate connect after the floods: exit {code} in {took:?}");
    assert_eq!(code, 0, "{lines:?}");
}

/// IHellos naming a connected peer (an introduction: Redirect to the
/// flooder, Forwarded IHello to the peer) from four sources: each gets at
/// most one answer per datagram and at most 3x its bytes.
#[test]
fn introduction_floods_are_never_amplified() {
    let serve = Serve::start("127.0.0.1:0", &["--handshake-rate", "0"]);
    let url = format!("rtmfp://{}/app", serve.addr);
    let mut holder = Command::new(BIN)
        .args(["connect", "--json", "--sessions", "1", "--hold", &url])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peer = None;
    for _ in 0..100 {
        if let Some(e) = serve.events().into_iter().find(|e| e["event"] == "connect") {
            peer = e["peer_id"].as_str().map(str::to_owned);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let peer = peer.expect("the holder connected");
    let id: [u8; 32] = hex::decode(&peer).unwrap().try_into().unwrap();
    let shapes = vec![
        ihello(&crypto::epd_for_peer(&id), &[]),
        ihello(&crypto::epd_for_peer(&id), &[6; 16]),
    ];
    let mut floods = Vec::new();
    for k in 0..4 {
        let ip = format!("127.0.{}.7", 50 + k);
        let s = source(&ip).unwrap();
        let shapes = shapes.clone();
        let target = serve.addr;
        floods.push(std::thread::spawn(move || {
            (ip, flood(target, &s, &shapes, 100))
        }));
    }
    for f in floods {
        let (ip, t) = f.join().unwrap();
        let r = ratio(t.recv, t.sent);
        println!(
            "introduction flood from {ip}: {} datagrams, {} B in, {} answers, {} B out: {r:.2}x",
            t.sent_dgrams, t.sent, t.recv_dgrams, t.recv
        );
        assert!(r <= 3.0, "{ip}: {r:.2}x");
        assert!(t.recv_dgrams <= t.sent_dgrams);
    }
    let (code, lines, _) = connect(&url, &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 0, "{lines:?}");
}

/// 70 half-open sessions from 127.0.0.1 (valid cookies and group-2 keys,
/// never confirmed), past the per-prefix cap of 64: the oldest make room
/// for the newest (every IIKeying is answered), and a client from the same
/// address is never refused for half-open slots (before, it waited out the
/// pile's 6 s lifetime).
#[test]
fn a_half_open_pile_does_not_lock_out_its_own_prefix() {
    const PILE: usize = 70;
    let serve = Serve::start("127.0.0.1:0", &["--handshake-rate", "0"]);
    let url = format!("rtmfp://{}/app", serve.addr);
    let client =
        Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(5)).unwrap();
    let cert = client.certificate().to_vec();
    let hello = ihello(&[0x01, 0x0a], &[8; 16]);
    let owners: Vec<UdpSocket> = (0..PILE).map(|_| source("127.0.0.1").unwrap()).collect();
    let mut cookies = Vec::new();
    for o in &owners {
        o.send_to(&hello, serve.addr).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = o.recv_from(&mut buf).expect("an RHello");
        cookies.push(rhello_of(&buf[..n]).expect("an RHello"));
    }
    let ik = InitiatorKeying::new(
        &client,
        &CryptoSettings::flash_player(),
        &cookies[0].1,
        &mut SeededRng::new(6),
    )
    .unwrap();
    for (i, (o, (cookie, _))) in owners.iter().zip(&cookies).enumerate() {
        let d = seal(&plain(|w| {
            chunk::IIKeying {
                isid: [0, 1, 0, i as u8 + 1],
                cookie,
                certificate: &cert,
                skic: ik.skic(),
                signature: b"X",
                signed: &[],
            }
            .encode(w)
        }));
        o.send_to(&d, serve.addr).unwrap();
    }
    let got = drain_all(&owners);
    let keyed: usize = got.iter().map(|g| rikeyings(g)).sum();
    let (code, lines, took) = connect(&url, &["--dh-group", "2"]);
    let refused: Vec<Json> = serve
        .events()
        .into_iter()
        .filter(|e| e["event"] == "refused" && e["reason"] == "half_open")
        .collect();
    println!(
        "half-open pile of {PILE} from 127.0.0.1: {keyed} keyed; a client from the same address: \
         exit {code} in {took:?}; refused for half-open slots: {}",
        refused.len()
    );
    assert_eq!(keyed, PILE, "the oldest half-open sessions made room");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(code, 0, "{lines:?}");
}
