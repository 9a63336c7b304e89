//! What `rtmfp connect` reports, as human text and as JSON lines with
//! stable field names (durations in milliseconds, `*_ms`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::flash::{KeepalivePeriods, StatusInfo, Value};
use crate::proto::crypto::peer_id_hex;

/// One successful connection.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    pub url: String,
    pub far_address: SocketAddr,
    pub local_addresses: Vec<SocketAddr>,
    /// Our address as the server sees it, when it says (`publicAddress`).
    pub observed_address: Option<SocketAddr>,
    pub peer_id: [u8; 32],
    pub server_fingerprint: [u8; 32],
    pub dh_group: u8,
    pub hmac_send: bool,
    pub hmac_recv: bool,
    pub sseq_send: bool,
    pub sseq_recv: bool,
    /// First IHello to session open.
    pub handshake: Duration,
    /// Session open to the `connect` reply.
    pub connect: Duration,
    /// The session's smoothed RTT (from timestamp echoes).
    pub srtt: Option<Duration>,
    /// One RTMFP Ping round trip after connecting.
    pub ping: Option<Duration>,
    pub keepalive: Option<KeepalivePeriods>,
    /// The connect reply's info object.
    pub server_info: Value,
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn opt_ms(d: Option<Duration>) -> Json {
    d.map_or(Json::Null, |d| json!(ms(d)))
}

/// An AMF value as JSON (via the AMF module's own JSON form).
pub fn amf_json(v: &Value) -> Json {
    serde_json::from_str(&v.to_json()).unwrap_or(Json::Null)
}

impl ConnectReport {
    pub fn to_json(&self) -> Json {
        json!({
            "type": "connect",
            "url": self.url,
            "far_address": self.far_address.to_string(),
            "local_addresses": self.local_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "observed_address": self.observed_address.map(|a| a.to_string()),
            "peer_id": peer_id_hex(&self.peer_id),
            "server_fingerprint": peer_id_hex(&self.server_fingerprint),
            "dh_group": self.dh_group,
            "hmac": { "send": self.hmac_send, "recv": self.hmac_recv },
            "sseq": { "send": self.sseq_send, "recv": self.sseq_recv },
            "handshake_ms": ms(self.handshake),
            "connect_ms": ms(self.connect),
            "srtt_ms": opt_ms(self.srtt),
            "ping_ms": opt_ms(self.ping),
            "keepalive": self.keepalive.map(|k| json!({
                "server_ms": k.server.as_millis() as u64,
                "peer_ms": k.peer.as_millis() as u64,
            })),
            "server_info": amf_json(&self.server_info),
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn show_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.3} ms", ms(d)))
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self
            .server_info
            .get("code")
            .and_then(Value::to_text)
            .unwrap_or_else(|| "(no info object)".to_owned());
        writeln!(f, "connected to {} ({})", self.url, self.far_address)?;
        writeln!(f, "  status:             {code}")?;
        writeln!(
            f,
            "  server fingerprint: {}",
            peer_id_hex(&self.server_fingerprint)
        )?;
        writeln!(f, "  our peer ID:        {}", peer_id_hex(&self.peer_id))?;
        let locals: Vec<String> = self.local_addresses.iter().map(|a| a.to_string()).collect();
        writeln!(f, "  local addresses:    {}", locals.join(" "))?;
        writeln!(
            f,
            "  observed address:   {}",
            self.observed_address
                .map_or_else(|| "(not reported)".to_owned(), |a| a.to_string())
        )?;
        writeln!(f, "  DH group:           {}", self.dh_group)?;
        writeln!(
            f,
            "  HMAC:               send {}, receive {}",
            yes_no(self.hmac_send),
            yes_no(self.hmac_recv)
        )?;
        writeln!(
            f,
            "  session sequence:   send {}, receive {}",
            yes_no(self.sseq_send),
            yes_no(self.sseq_recv)
        )?;
        writeln!(f, "  handshake:          {:.3} ms", ms(self.handshake))?;
        writeln!(f, "  connect:            {:.3} ms", ms(self.connect))?;
        writeln!(f, "  RTT (ping):         {}", show_ms(self.ping))?;
        writeln!(f, "  RTT (smoothed):     {}", show_ms(self.srtt))?;
        if let Some(k) = self.keepalive {
            writeln!(
                f,
                "  keepalive:          server {} s, peer {} s",
                k.server.as_secs_f64(),
                k.peer.as_secs_f64()
            )?;
        }
        write!(f, "  server info:        {}", self.server_info.to_json())
    }
}

/// One `--count` RTT sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingSample {
    pub seq: u32,
    /// `None`: no reply before the next probe (or the end).
    pub rtt: Option<Duration>,
}

impl PingSample {
    pub fn to_json(&self) -> Json {
        json!({ "type": "ping", "seq": self.seq, "rtt_ms": opt_ms(self.rtt), "lost": self.rtt.is_none() })
    }
}

impl fmt::Display for PingSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rtt {
            Some(r) => write!(f, "seq={} rtt={:.3} ms", self.seq, ms(r)),
            None => write!(f, "seq={} lost", self.seq),
        }
    }
}

/// min/avg/max over the samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    pub min: Option<Duration>,
    pub avg: Option<Duration>,
    pub max: Option<Duration>,
}

impl PingSummary {
    pub fn from_samples(samples: &[PingSample]) -> Self {
        let rtts: Vec<Duration> = samples.iter().filter_map(|s| s.rtt).collect();
        let n = rtts.len() as u32;
        Self {
            sent: samples.len() as u32,
            received: n,
            min: rtts.iter().min().copied(),
            max: rtts.iter().max().copied(),
            avg: (n > 0).then(|| rtts.iter().sum::<Duration>() / n),
        }
    }

    pub fn to_json(&self) -> Json {
        json!({
            "type": "ping_summary",
            "sent": self.sent,
            "received": self.received,
            "min_ms": opt_ms(self.min),
            "avg_ms": opt_ms(self.avg),
            "max_ms": opt_ms(self.max),
        })
    }
}

impl fmt::Display for PingSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loss = if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - self.received) / f64::from(self.sent)
        };
        write!(
            f,
            "{} probes, {} replies, {loss:.0}% lost; rtt min/avg/max = {}/{}/{}",
            self.sent,
            self.received,
            show_ms(self.min),
            show_ms(self.avg),
            show_ms(self.max)
        )
    }
}

/// Why a connection did not happen; maps onto `cli::exit` codes.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No RHello (or no session) within the timeout.
    NoAnswer(String),
    /// The server refused `connect`.
    Rejected {
        info: Option<StatusInfo>,
        reason: Option<String>,
    },
    /// Handshake, keying or TC protocol failure.
    Protocol(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        use crate::cli::exit;
        match self {
            Failure::NoAnswer(_) => exit::NO_ANSWER,
            Failure::Rejected { .. } => exit::REJECTED,
            Failure::Protocol(_) => exit::PROTOCOL,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Rejected { info: Some(i), .. } if i.is_server_full() => "server_full",
            Failure::NoAnswer(_) => "no_answer",
            Failure::Rejected { .. } => "rejected",
            Failure::Protocol(_) => "protocol",
        }
    }

    pub fn to_json(&self) -> Json {
        let mut o = json!({ "type": "error", "kind": self.kind(), "message": self.to_string() });
        if let Failure::Rejected { info: Some(i), .. } = self {
            o["code"] = json!(i.code);
            o["description"] = json!(i.description);
            o["info"] = amf_json(&i.to_value());
        }
        o
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoAnswer(m) | Failure::Protocol(m) => f.write_str(m),
            Failure::Rejected { info: Some(i), .. } => {
                write!(f, "rejected: {}", i.code)?;
                if let Some(d) = &i.description {
                    write!(f, " ({d})")?;
                }
                Ok(())
            }
            Failure::Rejected { info: None, reason } => {
                write!(
                    f,
                    "rejected: {}",
                    reason.as_deref().unwrap_or("no reason given")
                )
            }
        }
    }
}
