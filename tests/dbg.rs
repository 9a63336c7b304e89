mod support;
use rtmfp::proto::crypto::{self, DhGroup, PacketCipher};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig};
use rtmfp::proto::{Instant, SeededRng};
#[test]
fn dbg() {
    let now = Instant::from_micros(1_000_000);
    let mut ep = Endpoint::new(support::client_identity(2, &[DhGroup::G2]), EndpointConfig::default(), Box::new(SeededRng::new(3)), now);
    ep.add_interface(false);
    ep.connect(now, &crypto::epd_for_uri("rtmfp://192.0.2.1/app"), &["192.0.2.1:1935".parse().unwrap()]).unwrap();
    ep.handle_timeout(now);
    let mut buf = vec![0u8; 8192];
    let t = ep.poll_transmit(now, &mut buf).unwrap();
    eprintln!("dgram {}", t.len);
    let mut out = vec![0u8; 8192];
    let plain = PacketCipher::default_key().open(&buf[..t.len], &mut out).unwrap();
    eprintln!("plain {:02x?}", plain);
    panic!();
}
#[test]
fn dbg2() {
    use rtmfp::proto::stats::DropReason;
    let now = Instant::from_micros(1_000_000);
    let mut ep = Endpoint::new(support::client_identity(2, &[DhGroup::G2]), EndpointConfig::default(), Box::new(SeededRng::new(3)), now);
    ep.add_interface(false);
    let mut srv = Endpoint::new(support::server_identity(5, &[DhGroup::G2]), EndpointConfig::default(), Box::new(SeededRng::new(4)), now);
    srv.add_interface(false);
    ep.connect(now, &crypto::epd_for_uri("rtmfp://192.0.2.1/app"), &["192.0.2.1:1935".parse().unwrap()]).unwrap();
    ep.handle_timeout(now);
    let mut buf = vec![0u8; 8192];
    let t = ep.poll_transmit(now, &mut buf).unwrap();
    srv.handle_datagram(now, 0, "192.0.2.2:1935".parse().unwrap(), &buf[..t.len]);
    let st = srv.stats();
    for r in DropReason::ALL { if st.dropped(r) > 0 { eprintln!("  drop {}: {}", r.name(), st.dropped(r)); } }
    eprintln!("{:?}", st);
    let t = srv.poll_transmit(now, &mut buf);
    eprintln!("{:?} {:?}", t, srv.poll_event());
    panic!();
}
