//! `rtmfp probe-nat stun://host[:port]`: run the RFC 5780 tests
//! ([`crate::client::stun_probe`]), classify ([`crate::nat`]) and explain
//! the verdict: RFC 4787 classes, the familiar name, and which far NAT kinds
//! a direct session can reach.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value as Json, json};

use crate::cli::{ProbeNatArgs, exit};
use crate::client::report::ms;
use crate::client::stun_probe;
use crate::nat::{P2pClass, Verdict, classify_stun, reach};

/// Default STUN port (RFC 5389 §18.4).
const STUN_PORT: u16 = 3478;
/// Binary search stops when the bracket is narrower than this share of it.
const LIFETIME_PRECISION: f64 = 0.1;
/// At most this many idle trials (each as long as the idle time).
const LIFETIME_MAX_TRIALS: u32 = 8;

/// `stun://host[:port]` into host and port.
pub fn parse_stun_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("stun://").ok_or_else(|| {
        if url.starts_with("rtmfp://") {
            "an rtmfp:// URL is probed through the RTMFP connectivity check, not STUN".to_owned()
        } else {
            format!("not a stun:// URL: {url:?} (try stun://host[:port])")
        }
    })?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('?') {
        return Err(format!("expected stun://host[:port], got {url:?}"));
    }
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {url:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
            None if tail.is_empty() => STUN_PORT,
            None => return Err(format!("junk after ] in {url:?}")),
        };
        return Ok((host.to_owned(), port));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((
            h.to_owned(),
            p.parse().map_err(|_| format!("bad port in {url:?}"))?,
        )),
        Some(_) => Err(format!("put an IPv6 address in brackets: stun://[{rest}]")),
        None => Ok((rest.to_owned(), STUN_PORT)),
    }
}

pub(crate) struct Out {
    pub json: bool,
}

impl Out {
    pub(crate) fn error(&self, kind: &str, message: &str) {
        if self.json {
            println!(
                "{}",
                json!({"type": "error", "kind": kind, "message": message})
            );
        } else {
            eprintln!("error: {message}");
        }
    }
}

pub(crate) fn spinner(json: bool) -> ProgressBar {
    let pb = if !json && std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

pub fn run(args: ProbeNatArgs) -> i32 {
    let out = Out { json: args.json };
    if let Err(code) = super::monitor::check(&args.monitor, "probe-nat") {
        return code;
    }
    if args.url.starts_with("rtmfp://") {
        return super::probe_nat_rtmfp::run(args);
    }
    if args.monitor.dashboard || args.monitor.stats_interval.is_some() {
        out.error(
            "usage",
            "--dashboard and --stats-interval watch the RTMFP check (rtmfp://…): a STUN probe has no session to show",
        );
        return exit::USAGE;
    }
    if args.peer.is_some() {
        out.error(
            "usage",
            "--peer needs an rtmfp:// server: the peer is reached through its introduction",
        );
        return exit::USAGE;
    }
    let (host, port) = match parse_stun_url(&args.url) {
        Ok(v) => v,
        Err(e) => {
            out.error("usage", &e);
            return exit::USAGE;
        }
    };
    let rt = match super::runtime_single() {
        Ok(rt) => rt,
        Err(e) => {
            out.error("failure", &format!("cannot start the runtime: {e}"));
            return exit::FAILURE;
        }
    };
    rt.block_on(probe_all(args, host, port, out))
}

async fn probe_all(args: ProbeNatArgs, host: String, port: u16, out: Out) -> i32 {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            out.error("resolve", &format!("cannot resolve {host}: {e}"));
            return exit::RESOLVE;
        }
    };
    let mut targets = Vec::new();
    if !args.ipv6
        && let Some(a) = addrs.iter().find(|a| a.is_ipv4())
    {
        targets.push(*a);
    }
    if !args.ipv4
        && let Some(a) = addrs.iter().find(|a| a.is_ipv6())
    {
        targets.push(*a);
    }
    if targets.is_empty() {
        out.error(
            "resolve",
            &format!("{host} has no address of the requested family"),
        );
        return exit::RESOLVE;
    }
    let mut any_answer = false;
    for server in targets {
        let pb = spinner(args.json);
        let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
        let started = Instant::now();
        let mut step = |what: &str| pb.set_message(format!("{family} {server}: {what}"));
        let (obs, rtt) = match stun_probe::probe(server, args.timeout, &mut step).await {
            Ok(v) => v,
            Err(e) => {
                pb.finish_and_clear();
                out.error("failure", &format!("{family}: cannot probe from here: {e}"));
                return exit::FAILURE;
            }
        };
        let elapsed = started.elapsed();
        let verdict = classify_stun(&obs);
        let lifetime = match (args.lifetime, rtt) {
            (true, Some(rtt)) => lifetime(server, rtt, args.lifetime_max, &pb).await,
            _ => None,
        };
        pb.finish_and_clear();
        any_answer |= verdict.udp;
        let report = Report {
            method: "stun",
            url: &args.url,
            family,
            server,
            local: obs.local,
            elapsed,
            rtt,
            verdict: &verdict,
            lifetime,
        };
        if args.json {
            println!("{}", report.to_json());
        } else {
            print!("{}", report.text());
        }
    }
    if any_answer {
        exit::OK
    } else {
        exit::NO_ANSWER
    }
}

/// Binary search on idle time (RFC 5780 §4.6): bounds in which the mapping
/// dies, `(alive_at, dead_at)`; `dead_at` None = alive at the longest try.
async fn lifetime(
    server: SocketAddr,
    rtt: Duration,
    max: Duration,
    pb: &ProgressBar,
) -> Option<(Duration, Option<Duration>)> {
    let mut lo = Duration::ZERO;
    let mut hi = max;
    pb.set_message(format!("lifetime: idle {}s", max.as_secs()));
    match stun_probe::mapping_alive_after(server, max, rtt).await {
        Ok(Some(true)) => return Some((max, None)),
        Ok(Some(false)) => {}
        _ => return None,
    }
    for _ in 0..LIFETIME_MAX_TRIALS {
        if (hi - lo).as_secs_f64() <= hi.as_secs_f64() * LIFETIME_PRECISION
            || hi - lo < Duration::from_secs(1)
        {
            break;
        }
        let mid = (lo + hi) / 2;
        pb.set_message(format!(
            "lifetime: alive after {}s, gone after {}s; trying {}s idle",
            lo.as_secs(),
            hi.as_secs(),
            mid.as_secs()
        ));
        match stun_probe::mapping_alive_after(server, mid, rtt).await {
            Ok(Some(true)) => lo = mid,
            Ok(Some(false)) => hi = mid,
            _ => break,
        }
    }
    Some((lo, Some(hi)))
}

pub(crate) struct Report<'a> {
    /// "stun" or "rtmfp".
    pub method: &'static str,
    pub url: &'a str,
    pub family: &'a str,
    pub server: SocketAddr,
    pub local: Option<SocketAddr>,
    pub elapsed: Duration,
    pub rtt: Option<Duration>,
    pub verdict: &'a Verdict,
    pub lifetime: Option<(Duration, Option<Duration>)>,
}

fn p2p_rows(v: &Verdict) -> Vec<(P2pClass, bool, &'static str)> {
    match v.class() {
        Some(me) => P2pClass::ALL
            .iter()
            .map(|far| {
                let r = reach(me, *far);
                (*far, r.direct, r.reason)
            })
            .collect(),
        None => vec![],
    }
}

impl Report<'_> {
    pub fn to_json(&self) -> Json {
        let mut j = self.verdict.to_json();
        let o = j.as_object_mut().expect("verdict JSON is an object");
        o.insert("type".into(), json!("nat"));
        o.insert("url".into(), json!(self.url));
        o.insert(
            "family".into(),
            json!(if self.server.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            }),
        );
        o.insert("server".into(), json!(self.server.to_string()));
        o.insert("method".into(), json!(self.method));
        o.insert("elapsed_ms".into(), json!(ms(self.elapsed)));
        o.insert("rtt_ms".into(), json!(self.rtt.map(ms)));
        o.insert(
            "local_address".into(),
            json!(self.local.map(|a| a.to_string())),
        );
        o.insert(
            "lifetime_s".into(),
            json!(self.lifetime.map(|(lo, hi)| json!({
                "min": lo.as_secs_f64(),
                "max": hi.map(|h| h.as_secs_f64()),
            }))),
        );
        o.insert(
            "p2p".into(),
            json!(
                p2p_rows(self.verdict)
                    .iter()
                    .map(|(far, direct, reason)| json!({
                        "far": far.key(), "direct": direct, "reason": reason
                    }))
                    .collect::<Vec<_>>()
            ),
        );
        j
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let v = self.verdict;
        let mut s = String::new();
        let unknown = "unknown".to_owned();
        let _ = writeln!(
            s,
            "NAT probe of {} ({} server {}, {:.0} ms)",
            self.url,
            self.family,
            self.server,
            ms(self.elapsed)
        );
        if !v.udp {
            let _ = writeln!(
                s,
                "  UDP:          no answer. UDP is blocked between here and the server, or no {} server listens there.",
                if self.method == "stun" {
                    "STUN"
                } else {
                    "RTMFP"
                }
            );
            let _ = writeln!(
                s,
                "  verdict:      UDP blocked: no direct peer-to-peer session is possible; only a relay over another transport helps."
            );
            return s;
        }
        let _ = writeln!(
            s,
            "  public:       {} (local {})",
            v.public.map_or(unknown.clone(), |a| a.to_string()),
            self.local.map_or(unknown.clone(), |a| a.to_string())
        );
        let nat = match (v.nat, v.port_preserved) {
            (Some(false), _) => "none: the server sees our local address".to_owned(),
            (Some(true), Some(true)) => "yes, keeps our local port (port preservation)".to_owned(),
            (Some(true), _) => "yes, changes our port".to_owned(),
            (None, _) => unknown.clone(),
        };
        let _ = writeln!(s, "  NAT:          {nat}");
        let _ = writeln!(
            s,
            "  mapping:      {}",
            v.mapping.map_or("not determined", |m| m.describe())
        );
        let _ = writeln!(
            s,
            "  filtering:    {}",
            v.filtering.map_or("not determined", |f| f.describe())
        );
        let hp = match (v.nat, v.hairpin) {
            (Some(false), _) => "not applicable (no NAT)",
            (_, Some(true)) => "yes: hosts behind this NAT reach each other by public address",
            (_, Some(false)) => {
                "no: hosts behind this NAT must use local addresses to reach each other"
            }
            (_, None) => "not tested",
        };
        let _ = writeln!(s, "  hairpinning:  {hp}");
        if let Some((lo, hi)) = self.lifetime {
            let _ = match hi {
                Some(hi) => writeln!(
                    s,
                    "  lifetime:     an idle mapping lasts between {} s and {} s",
                    lo.as_secs(),
                    hi.as_secs()
                ),
                None => writeln!(s, "  lifetime:     more than {} s", lo.as_secs()),
            };
        }
        match v.class() {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "  verdict:      {} (RFC 4787: {})",
                    v.familiar_name(c),
                    c.rfc4787()
                );
            }
            None => {
                let _ = writeln!(s, "  verdict:      not determined (see below)");
            }
        }
        for i in &v.inconsistencies {
            let _ = writeln!(s, "  INCONSISTENT: {i}");
        }
        if !v.inconsistencies.is_empty() {
            let _ = writeln!(
                s,
                "                the evidence does not fit together; behaviours it would decide are left unknown. Retest."
            );
        }
        for n in &v.notes {
            let _ = writeln!(s, "  note:         {n}");
        }
        let rows = p2p_rows(v);
        if !rows.is_empty() {
            let _ = writeln!(
                s,
                "\n  Direct (peer-to-peer) sessions from here to a peer behind (spec 05 §5.1):"
            );
            for (far, direct, reason) in rows {
                let _ = writeln!(
                    s,
                    "    {:<22} {:<7} {}",
                    far.name(),
                    if direct { "direct" } else { "relay" },
                    reason
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls() {
        assert_eq!(
            parse_stun_url("stun://192.0.2.1").unwrap(),
            ("192.0.2.1".into(), 3478)
        );
        assert_eq!(
            parse_stun_url("stun://example.net:19302/").unwrap(),
            ("example.net".into(), 19302)
        );
        assert_eq!(
            parse_stun_url("stun://[2001:db8::1]:5000").unwrap(),
            ("2001:db8::1".into(), 5000)
        );
        assert_eq!(
            parse_stun_url("stun://[2001:db8::1]").unwrap(),
            ("2001:db8::1".into(), 3478)
        );
        assert!(parse_stun_url("stun://2001:db8::1").is_err());
        assert!(parse_stun_url("rtmfp://host/app").is_err());
        assert!(parse_stun_url("stun://").is_err());
        assert!(parse_stun_url("stun://h:99999").is_err());
    }
}
