//! The server against real endpoints over an in-memory, lossless network.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::flash::message::encode_command;
use crate::proto::crypto::{CryptoSettings, DhGroup, Identity, epd_for_peer, epd_for_uri};
use crate::proto::endpoint::{EndpointConfig, MAX_DATAGRAM};
use crate::proto::rng::SeededRng;
use crate::proto::session::FiHelloMode;

const SERVER: &str = "10.0.0.1:1935";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Client {
    ep: Endpoint,
    addr: SocketAddr,
    events: Vec<Event>,
}

struct Net {
    now: Instant,
    server_ep: Endpoint,
    server: Server,
    clients: Vec<Client>,
    server_events: Vec<ServerEvent>,
}

impl Net {
    fn new() -> Self {
        let mut rng = SeededRng::new(1);
        let id = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
        let fp = id.fingerprint();
        let mut ep = Endpoint::new(
            id,
            EndpointConfig::default(),
            Box::new(SeededRng::new(2)),
            Instant::ZERO,
        );
        ep.add_interface(false);
        Net {
            now: Instant::ZERO,
            server_ep: ep,
            server: Server::new(ServerConfig::default(), fp),
            clients: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn add_client(&mut self, fihello: FiHelloMode) -> usize {
        let i = self.clients.len();
        let mut rng = SeededRng::new(100 + i as u64);
        let id = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
        let cfg = EndpointConfig {
            crypto: CryptoSettings::flash_player(),
            fihello_mode: fihello,
            ..EndpointConfig::default()
        };
        let mut ep = Endpoint::new(id, cfg, Box::new(rng), self.now);
        ep.add_interface(false);
        self.clients.push(Client {
            ep,
            addr: addr(&format!("10.0.1.{}:5000", i + 1)),
            events: Vec::new(),
        });
        i
    }

    fn deliver(&mut self, from: SocketAddr, dst: SocketAddr, data: &[u8]) {
        if dst == addr(SERVER) {
            self.server_ep.handle_datagram(self.now, 0, from, data);
        } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == dst) {
            c.ep.handle_datagram(self.now, 0, from, data);
        }
    }

    /// Runs until nothing moves, stepping the clock by 1 ms.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while self.now < end {
            loop {
                let mut moved = false;
                self.server_ep.handle_timeout(self.now);
                while let Some(e) = self.server_ep.poll_event() {
                    self.server.handle_event(&mut self.server_ep, self.now, e);
                    moved = true;
                }
                while let Some(e) = self.server.poll_event() {
                    self.server_events.push(e);
                }
                while let Some(t) = self.server_ep.poll_transmit(self.now, &mut buf) {
                    let data = buf[..t.len].to_vec();
                    self.deliver(addr(SERVER), t.dst, &data);
                    moved = true;
                }
                for i in 0..self.clients.len() {
                    let now = self.now;
                    let c = &mut self.clients[i];
                    c.ep.handle_timeout(now);
                    while let Some(e) = c.ep.poll_event() {
                        c.events.push(e);
                        moved = true;
                    }
                    let from = c.addr;
                    let mut out = Vec::new();
                    while let Some(t) = c.ep.poll_transmit(now, &mut buf) {
                        out.push((t.dst, buf[..t.len].to_vec()));
                    }
                    for (dst, data) in out {
                        self.deliver(from, dst, &data);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            self.now += Duration::from_millis(1);
        }
    }

    fn session_of(&self, c: usize) -> Option<SessionHandle> {
        self.clients[c].events.iter().find_map(|e| match e {
            Event::Opened { session, .. } => Some(*session),
            _ => None,
        })
    }

    /// Opens a session to the server and the control flow; returns (session, flow).
    fn open(&mut self, c: usize) -> (SessionHandle, u64) {
        let epd = epd_for_uri("rtmfp://10.0.0.1/live");
        let now = self.now;
        self.clients[c]
            .ep
            .connect(now, &epd, &[addr(SERVER)])
            .unwrap();
        self.run(Duration::from_millis(50));
        let h = self.session_of(c).expect("session opened");
        let md = TcMetadata::new(0).to_bytes();
        let f = self.clients[c]
            .ep
            .transport(h)
            .unwrap()
            .open_flow(&md, None, Priority::Immediate)
            .unwrap();
        (h, f)
    }

    fn send(&mut self, c: usize, h: SessionHandle, flow: u64, bytes: &[u8]) {
        let ep = &mut self.clients[c].ep;
        ep.transport(h)
            .unwrap()
            .write(flow, bytes, WriteOptions::default())
            .unwrap();
        ep.wake(h);
        self.run(Duration::from_millis(50));
    }

    fn cmd(&mut self, c: usize, h: SessionHandle, flow: u64, cmd: Command) {
        self.send(c, h, flow, &encode_command(&cmd).unwrap());
    }

    fn connect(&mut self, c: usize) -> (SessionHandle, u64) {
        let (h, f) = self.open(c);
        let mut conn = Connect::flash("live", "rtmfp://10.0.0.1/live", "WIN 20,0,0,286");
        conn.transaction_id = 1.0;
        self.cmd(c, h, f, conn.to_command());
        (h, f)
    }

    /// Messages the client received, decoded, in order.
    fn received(&self, c: usize) -> Vec<Message<'static>> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Flow {
                    event: FlowEvent::Message { data, .. },
                    ..
                } => {
                    let leaked: &'static [u8] = Box::leak(data.clone().into_boxed_slice());
                    Message::parse(leaked).ok()
                }
                _ => None,
            })
            .collect()
    }

    fn commands(&self, c: usize) -> Vec<Command> {
        self.received(c)
            .into_iter()
            .filter_map(|m| match m.body {
                Body::Command { command, .. } => Some(command),
                _ => None,
            })
            .collect()
    }

    fn closed(&self, c: usize) -> bool {
        self.clients[c]
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed { .. }))
    }

    fn exceptions(&self, c: usize) -> Vec<u64> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Flow {
                    event: FlowEvent::Exception { flow, .. },
                    ..
                } => Some(*flow),
                _ => None,
            })
            .collect()
    }
}

#[path = "tests_p2p.rs"]
mod p2p;

#[test]
fn connect_result_and_keepalive() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (_h, _f) = net.connect(c);
    let client_id = net.clients[c].ep.identity().fingerprint();

    // Our control flow answers theirs.
    let assoc = net.clients[c].events.iter().find_map(|e| match e {
        Event::Flow {
            event:
                FlowEvent::NewFlow {
                    metadata,
                    return_for,
                    ..
                },
            ..
        } => Some((metadata.clone(), *return_for)),
        _ => None,
    });
    assert_eq!(assoc, Some((vec![0x54, 0x43, 0x04, 0x00], Some(1))));

    let msgs = net.received(c);
    let Body::Command { command, .. } = &msgs[0].body else {
        panic!("first message is not a command: {:?}", msgs[0]);
    };
    assert_eq!(command.name, "_result");
    assert_eq!(command.transaction_id, 1.0);
    let info = command.info_object().unwrap();
    assert_eq!(info.get("level").and_then(Value::as_str), Some("status"));
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        info.get("objectEncoding").and_then(Value::as_f64),
        Some(3.0)
    );
    assert_eq!(
        info.get("connectionID").and_then(Value::as_str),
        Some(peer_id_hex(&client_id).as_str())
    );
    let fp = peer_id_hex(&net.server_ep.identity().fingerprint());
    assert_eq!(
        info.get("serverFingerprint").and_then(Value::as_str),
        Some(fp.as_str())
    );
    assert_eq!(
        msgs[1].body,
        Body::UserControl(UserControl::SetKeepalive {
            server_ms: 15_000,
            peer_ms: 10_000
        })
    );
    assert!(net.server_events.iter().any(|e| matches!(e,
        ServerEvent::Connect { app, peer_id, .. } if app == "live" && *peer_id == client_id)));
    assert_eq!(net.server.stats().connects, 1);
}

#[test]
fn librtmfp_connect_quirks_tid0_and_no_object() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, f) = net.open(c);
    // "connect", 0 and nothing else.
    net.send(
        c,
        h,
        f,
        &[
            0x14, 0, 0, 0, 0, 0x02, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0, 0, 0, 0, 0,
            0, 0, 0, 0,
        ],
    );
    let cmds = net.commands(c);
    assert_eq!(cmds[0].name, "_result");
    assert_eq!(cmds[0].transaction_id, 0.0);
    assert!(!net.closed(c));
}

#[test]
fn command_before_connect_closes_only_that_session() {
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    let b = net.add_client(FiHelloMode::Ignore);
    net.connect(b);
    let (h, f) = net.open(a);
    net.cmd(a, h, f, Command::new("createStream", 2.0));
    net.run(Duration::from_millis(500));
    assert!(net.closed(a), "speaking before connect ends the connection");
    assert!(!net.closed(b));
    assert_eq!(net.server.connection_count(), 1);
    assert!(net.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::Error {
            error: ServerError::CommandBeforeConnect(_),
            closed: true,
            ..
        }
    )));
}

#[test]
fn second_connect_closes() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, f) = net.connect(c);
    net.cmd(c, h, f, Connect::new("live", "rtmfp://x/live").to_command());
    net.run(Duration::from_millis(500));
    assert!(net.closed(c));
}

#[test]
fn streams_unknown_commands_and_bad_input() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, f) = net.connect(c);
    net.cmd(c, h, f, Command::new("createStream", 2.0));
    net.cmd(c, h, f, Command::new("createStream", 3.0));
    // Malformed AMF: dropped and counted, the connection lives on.
    net.send(c, h, f, &[0x14, 0, 0, 0, 0, 0x02, 0xff, 0xff, b'x']);
    net.send(c, h, f, &[0x14, 0, 0]);
    net.cmd(c, h, f, Command::new("noSuchMethod", 4.0));
    let cmds = net.commands(c);
    let results: Vec<_> = cmds
        .iter()
        .filter(|c| c.name == "_result" && c.transaction_id > 1.0)
        .map(|c| (c.transaction_id, c.args[0].as_f64()))
        .collect();
    assert_eq!(results, [(2.0, Some(1.0)), (3.0, Some(2.0))]);
    let err = cmds.iter().find(|c| c.name == "_error").unwrap();
    assert_eq!(err.transaction_id, 4.0);
    assert_eq!(
        err.info_object()
            .unwrap()
            .get("code")
            .and_then(Value::as_str),
        Some("NetConnection.Call.Failed")
    );
    assert_eq!(net.server.stats().bad_messages, 2);
    assert!(!net.closed(c));

    // A flow for stream 1 (associated with the server's control flow) is
    // accepted; one for a stream never created, or unassociated, is not.
    let server_ctl = net.clients[c]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Flow {
                event: FlowEvent::NewFlow { flow, .. },
                ..
            } => Some(*flow),
            _ => None,
        })
        .unwrap();
    let t = net.clients[c].ep.transport(h).unwrap();
    let ok = t
        .open_flow(
            &TcMetadata::new(1).to_bytes(),
            Some(server_ctl),
            Priority::Immediate,
        )
        .unwrap();
    let bad = t
        .open_flow(
            &TcMetadata::new(9).to_bytes(),
            Some(server_ctl),
            Priority::Immediate,
        )
        .unwrap();
    let unassoc = t
        .open_flow(&TcMetadata::new(0).to_bytes(), None, Priority::Immediate)
        .unwrap();
    for fl in [ok, bad, unassoc] {
        net.send(
            c,
            h,
            fl,
            &encode_command(&Command::new("play", 0.0)).unwrap(),
        );
    }
    net.run(Duration::from_millis(300));
    let ex = net.exceptions(c);
    assert!(!ex.contains(&ok), "{ex:?}");
    assert!(ex.contains(&bad) && ex.contains(&unassoc), "{ex:?}");
    assert_eq!(
        net.server
            .connection(h_server(&net))
            .unwrap()
            .stream_count(),
        2
    );

    // deleteStream 1: its flow is refused (Flow Exception) at once.
    net.cmd(
        c,
        h,
        f,
        Command::new("deleteStream", 0.0).with_args([Value::Number(1.0)]),
    );
    net.run(Duration::from_millis(300));
    assert!(net.exceptions(c).contains(&ok));
    assert_eq!(
        net.server
            .connection(h_server(&net))
            .unwrap()
            .stream_count(),
        1
    );
    assert!(!net.closed(c));
}

fn h_server(net: &Net) -> SessionHandle {
    net.server_ep.sessions().next().unwrap().0
}

#[test]
fn stream_ids_are_capped() {
    let mut net = Net::new();
    net.server.cfg.max_streams = 2;
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, f) = net.connect(c);
    for tid in 2..5 {
        net.cmd(c, h, f, Command::new("createStream", f64::from(tid)));
    }
    let cmds = net.commands(c);
    assert_eq!(cmds.iter().filter(|c| c.name == "_result").count(), 3);
    let e = cmds.iter().find(|c| c.name == "_error").unwrap();
    assert_eq!(e.transaction_id, 4.0);
    assert!(!net.closed(c));
}

#[test]
fn set_peer_info_and_introduction() {
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    let b = net.add_client(FiHelloMode::SendRHello);
    let (hb, fb) = net.connect(b);
    net.connect(a);
    let b_id = net.clients[b].ep.identity().fingerprint();

    // Before setPeerInfo, B is not introduced.
    let now = net.now;
    let ha = net.clients[a]
        .ep
        .connect(now, &epd_for_peer(&b_id), &[addr(SERVER)])
        .unwrap();
    net.run(Duration::from_millis(20));
    assert_eq!(net.server.stats().introductions, 0);
    assert!(net.server.stats().introductions_refused >= 1);
    net.clients[a].ep.close(net.now, ha, false);

    net.cmd(
        b,
        hb,
        fb,
        Command::new("setPeerInfo", 0.0).with_args([
            Value::str("192.0.2.7:4000"),
            Value::str("not an address"),
            Value::Number(5.0),
            Value::str("[2001:db8::1]:4000"),
        ]),
    );
    let sb = h_server(&net);
    assert_eq!(
        net.server.connection(sb).unwrap().reported().unwrap(),
        [addr("192.0.2.7:4000"), addr("[2001:db8::1]:4000")]
    );

    let now = net.now;
    net.clients[a]
        .ep
        .connect(now, &epd_for_peer(&b_id), &[addr(SERVER)])
        .unwrap();
    net.run(Duration::from_millis(200));
    assert!(net.server.stats().introductions >= 1);
    assert!(net.server_events.iter().any(|e| matches!(e,
        ServerEvent::Introduction { target, addresses: 3, .. } if *target == b_id)));
    // The Redirect led A to B's observed address and B answered the
    // forwarded IHello: A and B have a direct session.
    let opened = net.clients[a].events.iter().any(|e| {
        matches!(e, Event::Opened { peer_id, far_addr, .. }
            if *peer_id == b_id && *far_addr == net.clients[b].addr)
    });
    assert!(opened, "{:?}", net.clients[a].events);
}

#[test]
fn closing_removes_the_peer() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, _f) = net.connect(c);
    let id = net.clients[c].ep.identity().fingerprint();
    assert!(net.server.peer(&id).is_some());
    let now = net.now;
    net.clients[c].ep.close(now, h, true);
    net.run(Duration::from_millis(300));
    assert!(net.server.peer(&id).is_none());
    assert_eq!(net.server.connection_count(), 0);
    assert!(net.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::SessionClosed {
            reason: CloseReason::Remote,
            ..
        }
    )));
}

#[test]
fn introductions_are_rate_limited_per_source() {
    let mut net = Net::new();
    net.server.cfg.introduction_rate = 2;
    net.server.cfg.introductions_across_apps = true;
    let b = net.add_client(FiHelloMode::Ignore);
    let (hb, fb) = net.connect(b);
    net.cmd(b, hb, fb, Command::new("setPeerInfo", 0.0));
    let target = net.clients[b].ep.identity().fingerprint();
    let epd = epd_for_peer(&target);
    let attacker = addr("198.51.100.1:9");
    let intro = |net: &mut Net| {
        let e = Event::UnmatchedIHello {
            iface: 0,
            from: attacker,
            epd: epd.clone(),
            tag: vec![7; 16],
        };
        let now = net.now;
        net.server_ep.credit_for_test(now, attacker.ip(), 68);
        net.server.handle_event(&mut net.server_ep, now, e);
    };
    for _ in 0..10 {
        intro(&mut net);
    }
    // Burst of 2 × rate, the rest ignored.
    assert_eq!(net.server.stats().introductions, 4);
    assert_eq!(net.server.stats().introductions_limited, 6);
    net.run(Duration::from_millis(1000));
    intro(&mut net);
    assert_eq!(
        net.server.stats().introductions,
        5,
        "tokens refill with time"
    );
}

#[test]
fn a_client_closing_its_flows_is_a_close_not_an_error() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    let (h, f) = net.connect(c);
    // What Flash and `rtmfp connect` do to disconnect: end the control flow.
    net.clients[c].ep.transport(h).unwrap().close_flow(f);
    net.clients[c].ep.wake(h);
    net.run(Duration::from_millis(500));
    assert!(
        !net.server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Error { .. })),
        "{:?}",
        net.server_events
    );
    assert!(net.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::ClientClosed {
            how: ClientClose::ControlFlowClosed,
            ..
        }
    )));
    assert_eq!(net.server.connection_count(), 0);
}

#[test]
fn connect_result_carries_the_public_address() {
    let mut net = Net::new();
    let c = net.add_client(FiHelloMode::Ignore);
    net.connect(c);
    let cmds = net.commands(c);
    let info = &cmds[0].args[0];
    assert_eq!(
        info.get("publicAddress")
            .and_then(Value::to_text)
            .as_deref(),
        Some("10.0.1.1:5000")
    );
}

mod media;
mod play_args;
