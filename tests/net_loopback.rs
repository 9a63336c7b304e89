//! Two endpoints over real UDP sockets on loopback, each driven by the
//! tokio edge: handshake, then 2 MB over an ordered flow through the batched
//! send and receive paths.

mod support;

use std::time::Duration;

use rtmfp::net::{self, App, Clock, Driver};
use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, SessionHandle};
use rtmfp::proto::flow::{FlowEvent, Priority, WriteOptions};
use rtmfp::proto::{Instant, SeededRng};

const TOTAL: usize = 2_000_000;
const MSG: usize = 10_000;

struct Receiver {
    got: Vec<u8>,
}

impl App for Receiver {
    type Command = ();
    fn on_event(&mut self, _ep: &mut Endpoint, _now: Instant, e: Event) {
        if let Event::Flow {
            event: FlowEvent::Message { data, .. },
            ..
        } = e
        {
            self.got.extend_from_slice(&data);
        }
    }
    fn done(&self) -> bool {
        self.got.len() >= TOTAL
    }
}

struct Sender {
    session: Option<SessionHandle>,
    flow: Option<u64>,
    sent: usize,
    closed: bool,
}

impl Sender {
    fn pump(&mut self, ep: &mut Endpoint) {
        let (Some(h), Some(f)) = (self.session, self.flow) else {
            return;
        };
        let t = ep.transport(h).unwrap();
        while self.sent < TOTAL && t.send_capacity(f).unwrap_or(0) >= MSG {
            let chunk: Vec<u8> = (self.sent..self.sent + MSG)
                .map(|i| (i % 251) as u8)
                .collect();
            t.write(f, &chunk, WriteOptions::default()).unwrap();
            self.sent += MSG;
        }
        ep.wake(h);
    }
}

impl App for Sender {
    type Command = ();
    fn on_event(&mut self, ep: &mut Endpoint, _now: Instant, e: Event) {
        match e {
            Event::Opened { session, .. } => {
                self.session = Some(session);
                let f = ep
                    .transport(session)
                    .unwrap()
                    .open_flow(b"TC\x04\x00", None, Priority::Routine)
                    .unwrap();
                self.flow = Some(f);
                self.pump(ep);
            }
            Event::Closed { .. } => self.closed = true,
            _ => self.pump(ep),
        }
    }
    fn timeout(&self) -> Option<Instant> {
        None
    }
    fn done(&self) -> bool {
        self.closed
    }
}

#[test]
fn bulk_transfer_over_loopback_udp() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = Clock::new();
        let server_sock = net::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server_addr = server_sock.local_addr().unwrap();
        let mut sep = Endpoint::new(
            support::server_identity(1, &[DhGroup::G2]),
            EndpointConfig::default(),
            Box::new(net::OsRng),
            clock.now(),
        );
        sep.add_interface(false);
        let mut server = Driver::new(sep, Receiver { got: Vec::new() }, vec![server_sock], clock);

        let client_sock = net::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut cep = Endpoint::new(
            support::client_identity(2, &[DhGroup::G2]),
            EndpointConfig::default(),
            Box::new(SeededRng::new(3)),
            clock.now(),
        );
        cep.add_interface(false);
        cep.connect(
            clock.now(),
            &crypto::epd_for_uri("rtmfp://127.0.0.1/app"),
            &[server_addr],
        )
        .unwrap();
        let sender = Sender {
            session: None,
            flow: None,
            sent: 0,
            closed: false,
        };
        let mut client = Driver::new(cep, sender, vec![client_sock], clock);
        let client_task = tokio::spawn(async move {
            client
                .run(
                    tokio::time::sleep(Duration::from_secs(20)),
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            client
        });
        tokio::time::timeout(
            Duration::from_secs(20),
            server.run(std::future::pending(), Duration::from_secs(1)),
        )
        .await
        .expect("transfer finished in time")
        .unwrap();
        let got = &server.app.got;
        assert_eq!(got.len(), TOTAL);
        assert!(
            got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
            "bytes intact and in order"
        );
        client_task.abort();
    });
}
