//! `serve --metrics ADDR`: the server's figures in the Prometheus text
//! format (0.0.4) at `GET /metrics`.
//!
//! The format comes from `prometheus-client`; the values come from the
//! latest [`Snapshot`] (at most [`SCRAPE_SNAPSHOT_EVERY`] old), so a scrape
//! never touches the endpoint. The HTTP side is a deliberately small
//! HTTP/1.1 responder on the server's own runtime (no framework needed for
//! one read-only page): each client is a task with a bounded request size, a
//! deadline for the whole exchange and a cap on clients at once, so a slow
//! or silent client costs one task and a socket, never the server.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::net::snapshot::{RTT_BUCKETS, STATES, Snapshot, state_name};
use crate::proto::stats::DropReason;

/// How fresh the figures behind a scrape are.
pub const SCRAPE_SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Largest request head read; larger requests get 431.
const MAX_REQUEST: usize = 8 * 1024;
/// The request head must arrive within this: a client that connects and
/// says nothing gives its slot back soon.
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// Everything (request and response) must be done within this.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);
/// Clients served at once; more are closed at once.
const MAX_CLIENTS: usize = 32;

/// Labelled samples of one metric family.
#[derive(Debug)]
struct Samples {
    kind: MetricType,
    values: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Samples {
    fn one(kind: MetricType, v: f64) -> Self {
        Self {
            kind,
            values: vec![(Vec::new(), v)],
        }
    }

    fn labelled(
        kind: MetricType,
        key: &'static str,
        values: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        Self {
            kind,
            values: values
                .into_iter()
                .map(|(l, v)| (vec![(key, l)], v))
                .collect(),
        }
    }
}

impl EncodeMetric for Samples {
    fn encode(&self, mut enc: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.values {
            if labels.is_empty() {
                self.encode_value(&mut enc, *v)?;
            } else {
                let mut e = enc.encode_family(labels)?;
                self.encode_value(&mut e, *v)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

impl Samples {
    fn encode_value(&self, enc: &mut MetricEncoder, v: f64) -> Result<(), std::fmt::Error> {
        match self.kind {
            MetricType::Counter => enc.encode_counter::<NoLabelSet, f64, f64>(&v, None),
            _ => enc.encode_gauge(&v),
        }
    }
}

#[derive(Debug)]
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut enc: MetricEncoder) -> Result<(), std::fmt::Error> {
        enc.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The whole `/metrics` page for `s`.
pub fn encode(s: &Snapshot) -> String {
    use MetricType::{Counter, Gauge};
    let e = &s.endpoint;
    let mut r = Registry::with_prefix("rtmfp");
    let by_state = s.sessions_by_state();
    r.register(
        "sessions",
        "Sessions now, by state (ihello and keying are handshakes in progress)",
        Samples::labelled(
            Gauge,
            "state",
            STATES
                .iter()
                .zip(by_state)
                .map(|(st, n)| (state_name(*st).to_owned(), n as f64)),
        ),
    );
    r.register(
        "handshake_responses",
        "Handshake answers sent (RHello and RIKeying)",
        Samples::one(Counter, e.handshakes_answered as f64),
    );
    r.register(
        "sessions_opened",
        "Handshakes that ended in an open session",
        Samples::one(Counter, e.sessions_opened as f64),
    );
    r.register(
        "sessions_failed",
        "Sessions we initiated that never opened",
        Samples::one(Counter, e.sessions_failed as f64),
    );
    r.register(
        "sessions_closed",
        "Sessions that ended",
        Samples::one(Counter, e.sessions_closed as f64),
    );
    r.register(
        "handshakes_refused",
        "Handshakes refused by the session limit or the per-address rate limit",
        Samples::one(Counter, s.server.map_or(0, |v| v.refused) as f64),
    );
    r.register(
        "packets",
        "UDP datagrams received and sent",
        Samples::labelled(
            Counter,
            "direction",
            [
                ("in".to_owned(), e.rx_datagrams as f64),
                ("out".to_owned(), e.tx_datagrams as f64),
            ],
        ),
    );
    r.register(
        "bytes",
        "UDP payload bytes received and sent",
        Samples::labelled(
            Counter,
            "direction",
            [
                ("in".to_owned(), e.rx_bytes as f64),
                ("out".to_owned(), e.tx_bytes as f64),
            ],
        ),
    );
    r.register(
        "dropped_packets",
        "Incoming datagrams or chunks dropped, by reason",
        Samples::labelled(
            Counter,
            "reason",
            DropReason::ALL
                .iter()
                .map(|d| (d.name().to_owned(), e.dropped(*d) as f64)),
        ),
    );
    r.register(
        "socket_errors",
        "Send and receive system calls that failed",
        Samples::labelled(
            Counter,
            "direction",
            [
                ("in".to_owned(), s.edge.recv_errors as f64),
                ("out".to_owned(), s.edge.send_errors as f64),
            ],
        ),
    );
    r.register(
        "retransmissions",
        "Data packets retransmitted, summed over sessions",
        Samples::one(Counter, s.retransmissions as f64),
    );
    let (flows_tx, flows_rx) = s.flows();
    r.register(
        "flows",
        "Flows open now over every session, by direction",
        Samples::labelled(
            Gauge,
            "direction",
            [
                ("send".to_owned(), flows_tx as f64),
                ("receive".to_owned(), flows_rx as f64),
            ],
        ),
    );
    r.register(
        "messages",
        "Flow messages delivered to (in) and written by (out) the server, all flows",
        Samples::labelled(
            Counter,
            "direction",
            [
                ("in".to_owned(), s.messages_in as f64),
                ("out".to_owned(), s.messages_out as f64),
            ],
        ),
    );
    r.register(
        "session_rtt_seconds",
        "Smoothed round-trip time of each open session, sampled once a second",
        Histogram {
            sum: s.rtt.sum_seconds,
            count: s.rtt.count(),
            buckets: RTT_BUCKETS
                .iter()
                .zip(s.rtt.counts)
                .map(|(b, n)| (*b, n))
                .collect(),
        },
    );
    r.register(
        "connects",
        "NetConnection connect commands accepted",
        Samples::one(Counter, s.server.map_or(0, |v| v.connects) as f64),
    );
    r.register(
        "introductions",
        "Peers introduced to each other (Redirect sent, IHello forwarded)",
        Samples::one(Counter, s.introductions() as f64),
    );
    r.register(
        "streams",
        "Streams being published through the relay",
        Samples::one(Gauge, s.streams.len().max(s.media.streams as usize) as f64),
    );
    r.register(
        "publishers",
        "Sessions publishing a stream",
        Samples::one(Gauge, s.media.publishers as f64),
    );
    r.register(
        "subscribers",
        "Sessions playing a stream",
        Samples::one(Gauge, s.media.subscribers as f64),
    );
    r.register(
        "relayed_bytes",
        "Media bytes relayed to subscribers",
        Samples::one(Counter, s.media.relayed_bytes as f64),
    );
    r.register(
        "uptime_seconds",
        "Time since the server started",
        Samples::one(Gauge, s.uptime.as_secs_f64()),
    );
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

/// Serves `/metrics` from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, source: watch::Receiver<Arc<Snapshot>>) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let sock = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of descriptors and the like: pause instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CLIENT_DEADLINE, answer(sock, source)).await;
        });
    }
}

async fn answer(
    mut sock: TcpStream,
    source: watch::Receiver<Arc<Snapshot>>,
) -> std::io::Result<()> {
    let head_deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let head_end = loop {
        if let Some(i) = find(&buf[..len], b"\r\n\r\n").or_else(|| find(&buf[..len], b"\n\n")) {
            break i;
        }
        if len == buf.len() {
            return respond(&mut sock, "431 Request Header Fields Too Large", "", "").await;
        }
        let n = match tokio::time::timeout_at(head_deadline, sock.read(&mut buf[len..])).await {
            Ok(r) => r?,
            Err(_) => return respond(&mut sock, "408 Request Timeout", "", "").await,
        };
        if n == 0 {
            return Ok(());
        }
        len += n;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(&mut sock, "400 Bad Request", "text/plain", "bad request\n").await;
    };
    if !version.starts_with("HTTP/1.") {
        return respond(
            &mut sock,
            "400 Bad Request",
            "text/plain",
            "HTTP/1.x only\n",
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut sock,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    let (status, ctype, body) = match path {
        "/metrics" => {
            let snap = Arc::clone(&source.borrow());
            (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                encode(&snap),
            )
        }
        "/" => (
            "200 OK",
            "text/plain; charset=utf-8",
            "rtmfp serve: metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_owned(),
        ),
    };
    let body = if head_only { "" } else { body.as_str() };
    respond(&mut sock, status, ctype, body).await
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !ctype.is_empty() {
        head.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::snapshot::RttHistogram;

    #[test]
    fn page_has_conventional_names() {
        let mut s = Snapshot::default();
        s.endpoint.rx_datagrams = 7;
        s.endpoint.drops[DropReason::Decrypt as usize] = 3;
        let mut h = RttHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        s.rtt = h;
        let page = encode(&s);
        assert!(
            page.contains("rtmfp_packets_total{direction=\"in\"} 7"),
            "{page}"
        );
        assert!(
            page.contains("rtmfp_dropped_packets_total{reason=\"decrypt\"} 3"),
            "{page}"
        );
        assert!(page.contains("# TYPE rtmfp_session_rtt_seconds histogram"));
        assert!(page.contains("rtmfp_session_rtt_seconds_bucket{le=\"0.005\"} 1"));
        assert!(page.contains("rtmfp_session_rtt_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(page.contains("rtmfp_sessions{state=\"open\"} 0"));
    }
}
