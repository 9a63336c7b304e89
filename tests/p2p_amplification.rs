//! A `publish --p2p` publisher under attack on loopback: strangers on
//! several 127.x addresses send IHellos naming its peer ID straight to its
//! socket, and ask serve to introduce them to it (serve forwards each as a
//! FIHello, which the publisher answers toward the stranger's address).
//! To every such unverified address the publisher sends at most 3x the
//! bytes that address sent and at most one datagram per datagram, and its
//! legitimate subscriber gets every frame meanwhile. (serve's own side of
//! introduction floods is tests/attack.rs.)

#[path = "support/json_proc.rs"]
mod json_proc;

#[path = "support/media.rs"]
mod media;

use std::io::BufReader;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use json_proc::Proc;
use rtmfp::media::flv::{FlvReader, TagType};
use rtmfp::proto::crypto::{self, PacketCipher};
use rtmfp::proto::endpoint::MAX_DATAGRAM;
use rtmfp::proto::wire::chunk;
use rtmfp::proto::wire::header::{Mode, PacketHeader};
use rtmfp::proto::wire::{AddressOrigin, PeerAddress, WireError, Writer};
use rtmfp::proto::{Rng, SeededRng};

fn ihello(epd: &[u8], tag: &[u8]) -> Vec<u8> {
    startup(|w| chunk::IHello { epd, tag }.encode(w))
}

/// A forged FIHello, sent straight to the publisher outside any session,
/// asking it to answer toward `victim`.
fn fihello(epd: &[u8], victim: SocketAddr, tag: &[u8]) -> Vec<u8> {
    let reply_address = PeerAddress {
        addr: victim,
        origin: AddressOrigin::Observed,
    };
    startup(|w| {
        chunk::FIHello {
            epd,
            reply_address,
            tag,
        }
        .encode(w)
    })
}

fn startup(body: impl FnOnce(&mut Writer) -> Result<(), WireError>) -> Vec<u8> {
    let mut buf = vec![0u8; 4000];
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
    let mut out = vec![0u8; MAX_DATAGRAM];
    let n = PacketCipher::default_key()
        .seal([0; 4], &buf[..n], &mut out)
        .unwrap();
    out.truncate(n);
    out
}

/// What one stranger sent, and what came back from the publisher and from
/// serve.
#[derive(Default, Debug)]
struct Tally {
    sent: usize,
    sent_dgrams: usize,
    from_pub: usize,
    from_pub_dgrams: usize,
    from_serve: usize,
}

/// Sends every shape `rounds` times to `target` (paced, so the publisher's
/// stream is not simply starved of loopback), then drains until quiet
/// (bounded).
fn attack(
    s: &UdpSocket,
    target: SocketAddr,
    publisher: SocketAddr,
    serve: SocketAddr,
    shapes: &[Vec<u8>],
    rounds: usize,
) -> Tally {
    let mut t = Tally::default();
    let mut buf = vec![0u8; 65536];
    let mut take = |t: &mut Tally, s: &UdpSocket| {
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == publisher {
                t.from_pub += n;
                t.from_pub_dgrams += 1;
            } else if from == serve {
                t.from_serve += n;
            }
        }
    };
    s.set_nonblocking(true).unwrap();
    for _ in 0..rounds {
        for d in shapes {
            if s.send_to(d, target).is_ok() {
                t.sent += d.len();
                t.sent_dgrams += 1;
            }
        }
        take(&mut t, s);
        std::thread::sleep(Duration::from_millis(10));
    }
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for _ in 0..100_000 {
        match s.recv_from(&mut buf) {
            Ok((n, from)) if from == publisher => {
                t.from_pub += n;
                t.from_pub_dgrams += 1;
            }
            Ok((n, from)) if from == serve => t.from_serve += n,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    t
}

#[test]
fn a_p2p_publisher_never_amplifies_toward_strangers() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rtmfp-p2p-amp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.flv");
    media::make_flv(&input, 6, Some("flv"), Some("adpcm_swf"));
    // Strangers with no session of their own get introduced too, as by a
    // server that introduces anyone: the publisher then answers FIHellos
    // naming addresses that never proved anything.
    let (serve, serve_addr) = json_proc::serve_with(&["--introduce-across-apps"]);
    let url = format!("rtmfp://{serve_addr}/live/cam");
    let publisher = Proc::spawn(&[
        "publish",
        "--p2p",
        "--json",
        "--wait-peers",
        "1",
        &url,
        input.to_str().unwrap(),
    ]);
    let id = publisher.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The publisher's socket, as serve saw it.
    let pub_addr: SocketAddr = loop {
        let e = serve.wait_for("event", "connect");
        if e["peer_id"] == id.as_str() {
            break e["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let out = dir.join("out.flv");
    let sub = Proc::spawn(&[
        "subscribe",
        "--peer",
        &id,
        "--json",
        "--wait",
        "15s",
        &url,
        "-o",
        out.to_str().unwrap(),
    ]);
    sub.wait_for("type", "peer_opened");

    let raw: [u8; 32] = hex::decode(&id).unwrap().try_into().unwrap();
    let mut rng = SeededRng::new(8);
    let mut other = [0u8; 32];
    rng.fill(&mut other);
    let named = |tag: &[u8]| ihello(&crypto::epd_for_peer(&raw), tag);
    // Straight at the publisher: IHellos naming it (with and without tags),
    // one naming somebody else, one for a URL.
    let direct = vec![
        named(&[]),
        named(&[1; 16]),
        named(&[2; 64]),
        ihello(&crypto::epd_for_peer(&other), &[3; 16]),
        ihello(&crypto::epd_for_uri(&url), &[4; 16]),
        fihello(
            &crypto::epd_for_peer(&raw),
            "127.0.0.1:9".parse().unwrap(),
            &[7; 16],
        ),
    ];
    // Through serve: introductions to it, which reach the publisher as
    // FIHellos naming the stranger's address.
    let introduced = vec![named(&[5; 16]), named(&[6; 16])];
    let mut attackers = Vec::new();
    for k in 0..4 {
        let ip = format!("127.0.{}.9", 70 + k);
        let s = UdpSocket::bind(format!("{ip}:0")).expect("a 127.x source");
        let (target, shapes) = if k < 2 {
            (pub_addr, direct.clone())
        } else {
            (serve_addr, introduced.clone())
        };
        attackers.push(std::thread::spawn(move || {
            let t = attack(&s, target, pub_addr, serve_addr, &shapes, 100);
            (ip, target, t)
        }));
    }
    let mut introduced_answers = 0;
    for a in attackers {
        let (ip, target, t) = a.join().unwrap();
        let r = t.from_pub as f64 / t.sent.max(1) as f64;
        println!(
            "{ip} -> {target}: {} datagrams, {} B sent; from the publisher {} datagrams, \
             {} B: {r:.2}x (from serve {} B)",
            t.sent_dgrams, t.sent, t.from_pub_dgrams, t.from_pub, t.from_serve
        );
        assert!(r <= 3.0, "{ip}: the publisher sent {r:.2}x: {t:?}");
        assert!(t.from_pub_dgrams <= t.sent_dgrams, "{ip}: {t:?}");
        if target == serve_addr {
            introduced_answers += t.from_pub_dgrams;
        }
    }
    // Not vacuous: the FIHellos did reach the publisher, and it answered.
    assert!(
        introduced_answers > 0,
        "the publisher never punched toward an introduced stranger"
    );

    let (code, lines) = sub.wait();
    assert_eq!(code, 0, "{lines:?}");
    let summary = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .expect("a summary");
    let f = std::fs::File::open(&input).unwrap();
    let mut r = FlvReader::new(BufReader::new(f)).unwrap();
    let mut frames = 0;
    while let Some(t) = r.next_tag().unwrap() {
        if t.tag_type != TagType::Script {
            frames += 1;
        }
    }
    assert_eq!(summary["frames"], frames, "{summary}");
    let (code, pub_lines) = publisher.wait();
    assert_eq!(code, 0, "{pub_lines:?}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
