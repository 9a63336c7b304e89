//! The I/O side of `probe-nat stun://`: runs the RFC 5780 tests against one
//! server address and hands the observations to [`crate::nat::classify_stun`].
//!
//! Tests that can run at once do (spec 05 §1.4): after test I, the mapping
//! tests II and III and the hairpin test share the mapping socket, while the
//! two filtering tests run on a second socket that talks only to A1:P1, so
//! the holes punched by the mapping tests cannot let a filtering reply in.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::nat::stun::{
    BINDING_REQUEST, BINDING_SUCCESS, Builder, CHANGE_IP, CHANGE_PORT, Message, attr,
};
use crate::nat::{StunObservations, StunReply};

/// Requests are padded to this size so a server that never answers with
/// more bytes than it got (ours) has room for every RFC 5780 attribute.
const REQUEST_SIZE: usize = 128;
/// Retransmission interval floor (RFC 5389 §7.2.1 suggests 500 ms; we
/// probe a known path and want an answer within 2 s at 50 ms RTT).
/// Filler for the SOFTWARE attribute (RFC 5389 §15.10), long enough for
/// any padding we need.
const SOFTWARE: &[u8] = b"rtmfp probe-nat (RFC 5780 NAT behaviour discovery); padded so the server may answer without amplifying.........................";
const MIN_RTO: Duration = Duration::from_millis(100);
/// How long to wait for answers that may never come (filtering, hairpin),
/// beyond a few round trips.
const NEGATIVE_WAIT: Duration = Duration::from_millis(500);

/// What a progress display is told.
pub trait Progress {
    fn step(&mut self, what: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, what: &str) {
        self(what)
    }
}

/// One request of a batch.
#[derive(Debug, Clone, Copy)]
struct Req {
    to: SocketAddr,
    change: u32,
    response_port: Option<u16>,
}

fn new_transaction() -> [u8; 12] {
    let mut t = [0u8; 12];
    // A failing OS RNG leaves zeros; the probe then still works, only forgeable.
    let _ = getrandom::fill(&mut t);
    t
}

fn encode(req: &Req, t: [u8; 12], buf: &mut [u8; REQUEST_SIZE]) -> usize {
    let mut w = match Builder::new(buf, BINDING_REQUEST, t) {
        Ok(w) => w,
        Err(_) => return 0,
    };
    if req.change != 0 {
        let _ = w.change_request(req.change);
    }
    if let Some(p) = req.response_port {
        let _ = w.response_port(p);
    }
    // SOFTWARE fills the rest, leaving room for FINGERPRINT. Not PADDING:
    // RFC 5780 servers (coturn) pad their *answer* to a PADDING request,
    // past 1500 bytes.
    let used = w.finish();
    let pad = REQUEST_SIZE.saturating_sub(used + 4 + 8);
    let _ = w.attr(attr::SOFTWARE, &SOFTWARE[..pad.min(SOFTWARE.len())]);
    w.finish_with_fingerprint().unwrap_or(0)
}

/// The outcome of one batch: per request, its reply; and whether one of our
/// own requests arrived back at this socket (hairpin).
struct BatchResult {
    replies: Vec<Option<(StunReply, Duration)>>,
    own_request_seen: Vec<bool>,
}

/// Sends every request, resends the unanswered ones every `rto`, and
/// collects replies until all are answered (or seen, for `expect_self`
/// entries) or `deadline`.
async fn batch(
    sock: &UdpSocket,
    reqs: &[Req],
    expect_self: &[bool],
    rto: Duration,
    deadline: Instant,
) -> std::io::Result<BatchResult> {
    let txs: Vec<[u8; 12]> = reqs.iter().map(|_| new_transaction()).collect();
    let index: HashMap<[u8; 12], usize> = txs.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut replies: Vec<Option<(StunReply, Duration)>> = vec![None; reqs.len()];
    let mut seen = vec![false; reqs.len()];
    let start = Instant::now();
    let mut buf = [0u8; REQUEST_SIZE];
    let mut rbuf = [0u8; 4096];
    let mut next_send = start;
    let done = |replies: &[Option<(StunReply, Duration)>], seen: &[bool]| {
        (0..reqs.len()).all(|i| {
            if expect_self.get(i).copied().unwrap_or(false) {
                seen[i]
            } else {
                replies[i].is_some()
            }
        })
    };
    // Bounded: every pass either sends (at most every rto) or receives, and
    // the deadline ends it.
    loop {
        let now = Instant::now();
        if now >= deadline || done(&replies, &seen) {
            break;
        }
        if now >= next_send {
            for (i, r) in reqs.iter().enumerate() {
                let pending = if expect_self.get(i).copied().unwrap_or(false) {
                    !seen[i]
                } else {
                    replies[i].is_none()
                };
                if pending {
                    let n = encode(r, txs[i], &mut buf);
                    // A send error (no route in this family) is an unanswered request.
                    let _ = sock.send_to(&buf[..n], r.to).await;
                }
            }
            next_send = now + rto;
        }
        let wait = next_send
            .min(deadline)
            .saturating_duration_since(Instant::now());
        let Ok(got) = tokio::time::timeout(wait, sock.recv_from(&mut rbuf)).await else {
            continue;
        };
        let (n, from) = match got {
            Ok(v) => v,
            // ICMP errors surface as recv errors on some systems: keep waiting.
            Err(_) => continue,
        };
        let Ok(m) = Message::parse(&rbuf[..n]) else {
            continue;
        };
        let Some(&i) = index.get(&m.transaction) else {
            continue;
        };
        if m.msg_type == BINDING_REQUEST {
            seen[i] = true;
            continue;
        }
        if m.msg_type != BINDING_SUCCESS {
            continue;
        }
        let Ok(Some(mapped)) = m.mapped() else {
            continue;
        };
        let reply = StunReply {
            mapped,
            source: from,
            other: m.other_address().ok().flatten(),
            origin: m.response_origin().ok().flatten(),
            conflicting: false,
        };
        match &mut replies[i] {
            None => replies[i] = Some((reply, start.elapsed())),
            Some((first, _)) => {
                if first.mapped != reply.mapped || first.source != reply.source {
                    first.conflicting = true;
                }
            }
        }
    }
    Ok(BatchResult {
        replies,
        own_request_seen: seen,
    })
}

async fn socket_for(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: IpAddr = if server.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    UdpSocket::bind((any, 0)).await
}

/// Runs the full RFC 5780 test set against `server` (A1:P1). `timeout`
/// bounds the wait for the first answer (no answer: UDP blocked or nothing
/// there).
pub async fn probe(
    server: SocketAddr,
    timeout: Duration,
    progress: &mut dyn Progress,
) -> std::io::Result<(StunObservations, Option<Duration>)> {
    let m_sock = socket_for(server).await?;
    let local = super::reportable_local_addr(m_sock.local_addr()?, server);
    let mut obs = StunObservations {
        server: Some(server),
        local: Some(local),
        ..Default::default()
    };
    progress.step("test I: asking the server for our public address");
    let t1 = batch(
        &m_sock,
        &[Req {
            to: server,
            change: 0,
            response_port: None,
        }],
        &[],
        Duration::from_millis(250),
        Instant::now() + timeout,
    )
    .await?;
    let Some((r1, rtt)) = t1.replies[0] else {
        return Ok((obs, None));
    };
    obs.test1 = Some(r1);
    let rto = (rtt * 2).max(MIN_RTO);
    let wait = rtt * 3 + NEGATIVE_WAIT;
    let Some(other) = r1.other else {
        progress.step("hairpin test");
        let hp = batch(
            &m_sock,
            &[Req {
                to: r1.mapped,
                change: 0,
                response_port: None,
            }],
            &[true],
            rto,
            Instant::now() + wait,
        )
        .await?;
        obs.hairpin = Some(hp.own_request_seen[0]);
        return Ok((obs, Some(rtt)));
    };
    progress.step("mapping, filtering and hairpin tests");
    let a2p1 = SocketAddr::new(other.ip(), server.port());
    let mapping_reqs = [
        Req {
            to: a2p1,
            change: 0,
            response_port: None,
        },
        Req {
            to: other,
            change: 0,
            response_port: None,
        },
        Req {
            to: r1.mapped,
            change: 0,
            response_port: None,
        },
    ];
    let f_sock = socket_for(server).await?;
    let filter_reqs = [
        Req {
            to: server,
            change: CHANGE_IP | CHANGE_PORT,
            response_port: None,
        },
        Req {
            to: server,
            change: CHANGE_PORT,
            response_port: None,
        },
    ];
    let deadline = Instant::now() + wait;
    let (m, f) = tokio::join!(
        batch(&m_sock, &mapping_reqs, &[false, false, true], rto, deadline),
        batch(&f_sock, &filter_reqs, &[], rto, deadline)
    );
    let (m, f) = (m?, f?);
    obs.test2 = Some(m.replies[0].map(|r| r.0));
    obs.test3 = Some(m.replies[1].map(|r| r.0));
    obs.hairpin = Some(m.own_request_seen[2]);
    obs.filter2 = Some(f.replies[0].map(|r| r.0));
    obs.filter3 = Some(f.replies[1].map(|r| r.0));
    Ok((obs, Some(rtt)))
}

/// Whether a mapping survives `idle` seconds without traffic (RFC 5780
/// §4.6): socket X learns its mapping, stays silent, then socket Y asks the
/// server to answer to X's public port (RESPONSE-PORT). `None`: the test
/// itself failed (no answer to X's first request).
pub async fn mapping_alive_after(
    server: SocketAddr,
    idle: Duration,
    rtt: Duration,
) -> std::io::Result<Option<bool>> {
    let x = socket_for(server).await?;
    let y = socket_for(server).await?;
    let rto = (rtt * 2).max(MIN_RTO);
    let first = batch(
        &x,
        &[Req {
            to: server,
            change: 0,
            response_port: None,
        }],
        &[],
        Duration::from_millis(250),
        Instant::now() + Duration::from_secs(3),
    )
    .await?;
    let Some((r, _)) = first.replies[0] else {
        return Ok(None);
    };
    tokio::time::sleep(idle).await;
    // Y sends, X listens for the reply with Y's transaction ID.
    let t = new_transaction();
    let mut buf = [0u8; REQUEST_SIZE];
    let req = Req {
        to: server,
        change: 0,
        response_port: Some(r.mapped.port()),
    };
    let n = encode(&req, t, &mut buf);
    let deadline = Instant::now() + rtt * 3 + NEGATIVE_WAIT;
    let mut rbuf = [0u8; 4096];
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Some(false));
        }
        if now >= next {
            let _ = y.send_to(&buf[..n], server).await;
            next = now + rto;
        }
        let wait = next.min(deadline).saturating_duration_since(Instant::now());
        if let Ok(Ok((len, _))) = tokio::time::timeout(wait, x.recv_from(&mut rbuf)).await
            && let Ok(m) = Message::parse(&rbuf[..len])
            && m.transaction == t
        {
            return Ok(Some(true));
        }
    }
}
