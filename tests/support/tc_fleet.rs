//! A rendezvous server holding many real TC connections, made in memory:
//! each client keys a session by a real handshake and sends
//! NetConnection.connect as Flash Player does, with no sockets. The memory
//! budget test and the dashboard bench both measure such a server.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rtmfp::flash::command::Connect;
use rtmfp::flash::message::encode_command;
use rtmfp::flash::metadata::TcMetadata;
use rtmfp::proto::crypto::{self, CryptoSettings, Identity};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, MAX_DATAGRAM};
use rtmfp::proto::flow::{Priority, WriteOptions};
use rtmfp::proto::{Instant, SeededRng};
use rtmfp::server::{Server, ServerConfig};

/// The server's address as every client sees it.
pub const SERVER_ADDR: &str = "192.0.2.1:1935";

/// Client `i`'s address: one host per client, as many distinct sources as
/// a real fleet (10.0.0.0/8 holds 16 million).
pub fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40000))
}

pub struct Fleet {
    pub server: Endpoint,
    pub app: Server,
    pub now: Instant,
    server_addr: SocketAddr,
    client_id: Identity,
    buf: Vec<u8>,
}

impl Fleet {
    /// A server endpoint with `server_id` and `cfg`, running the rendezvous
    /// app with default settings; clients connect with `client_id` (a
    /// static key, as Flash Player's).
    pub fn new(server_id: Identity, cfg: EndpointConfig, client_id: Identity) -> Fleet {
        let now = Instant::from_micros(1_000_000);
        let fp = server_id.fingerprint();
        let mut server = Endpoint::new(server_id, cfg, Box::new(SeededRng::new(2)), now);
        server.add_interface(false);
        Fleet {
            server,
            app: Server::new(ServerConfig::default(), fp),
            now,
            server_addr: SERVER_ADDR.parse().expect("literal"),
            client_id,
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    /// Connects client `i` to app `live` and leaves it idle: after the
    /// connect, three rounds `settle` apart let delayed acknowledgements
    /// fire on both sides so nothing is left in flight. The client's own
    /// endpoint is dropped; the server keeps the session, as it would for a
    /// client gone quiet.
    pub fn connect(&mut self, i: usize, settle: Duration) {
        let from = client_addr(i);
        let cfg = EndpointConfig {
            crypto: CryptoSettings::flash_player(),
            ..EndpointConfig::default()
        };
        let mut client = Endpoint::new(
            self.client_id.clone(),
            cfg,
            Box::new(SeededRng::new(i as u64)),
            self.now,
        );
        client.add_interface(false);
        let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/live");
        let h = client
            .connect(self.now, &epd, &[self.server_addr])
            .expect("connect");
        self.shuttle(&mut client, from);
        let t = client.transport(h).expect("session opened");
        let f = t
            .open_flow(&TcMetadata::new(0).to_bytes(), None, Priority::Immediate)
            .expect("control flow");
        let mut conn = Connect::flash("live", "rtmfp://192.0.2.1/live", "WIN 20,0,0,286");
        conn.transaction_id = 1.0;
        let bytes = encode_command(&conn.to_command()).expect("connect encodes");
        t.write(f, &bytes, WriteOptions::default())
            .expect("connect written");
        client.wake(h);
        for _ in 0..3 {
            self.shuttle(&mut client, from);
            self.now += settle;
        }
    }

    /// Moves datagrams both ways until neither side has anything to send.
    fn shuttle(&mut self, client: &mut Endpoint, from: SocketAddr) {
        let now = self.now;
        for _ in 0..16 {
            let mut moved = false;
            self.server.handle_timeout(now);
            client.handle_timeout(now);
            while let Some(e) = self.server.poll_event() {
                self.app.handle_event(&mut self.server, now, e);
            }
            while self.app.poll_event().is_some() {}
            while let Some(t) = self.server.poll_transmit(now, &mut self.buf) {
                client.handle_datagram(now, 0, self.server_addr, &self.buf[..t.len]);
                moved = true;
            }
            while client.poll_event().is_some() {}
            while let Some(t) = client.poll_transmit(now, &mut self.buf) {
                self.server
                    .handle_datagram(now, 0, from, &self.buf[..t.len]);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
}
