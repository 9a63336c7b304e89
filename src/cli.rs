//! The command line, defined once: `main` parses it, and the man pages and
//! shell completions under `man/` and `completions/` are generated from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Process exit codes. Scripts can rely on these.
pub mod exit {
    /// Everything worked.
    pub const OK: i32 = 0;
    /// A failure not covered below (I/O error, bad identity file, …).
    pub const FAILURE: i32 = 1;
    /// The command line was wrong.
    pub const USAGE: i32 = 2;
    /// The host name in the URL could not be resolved.
    pub const RESOLVE: i32 = 3;
    /// No answer: nothing listening, or UDP blocked on the way.
    pub const NO_ANSWER: i32 = 4;
    /// The server answered but rejected the connection (its status code is printed).
    pub const REJECTED: i32 = 5;
    /// The far end spoke, but the handshake or protocol failed.
    pub const PROTOCOL: i32 = 6;
    /// Interrupted (SIGINT or SIGTERM) before the work was done; what was
    /// done so far is reported first. (128 + SIGINT, as shells report it.)
    pub const INTERRUPTED: i32 = 130;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    other failure (I/O, bind, identity file, internal error)
  2    usage error (bad option, URL or input)
  3    host name could not be resolved
  4    no answer, port unreachable, or redirected to nowhere
  5    rejected by the server (status code printed)
  6    protocol or handshake failure (the error says which phase)
  130  interrupted (SIGINT/SIGTERM) before the work was done";

#[derive(Debug, Parser)]
#[command(
    name = "rtmfp",
    version,
    propagate_version = true,
    about = "RTMFP (RFC 7016 / RFC 7425) toolkit: rendezvous server, client and diagnostics",
    long_about = "rtmfp speaks RTMFP, the UDP protocol behind Flash and AIR peer-to-peer (RFC 7016, with the \
Flash profile of RFC 7425). It runs a rendezvous server, connects to any RTMFP server and reports what \
happened, and measures servers under load.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Serve(ServeArgs),
    Connect(ConnectArgs),
}

/// Run the rendezvous server.
///
/// Accepts Flash-compatible clients (Flash Player, AIR, librtmfp, rtmfp-cpp) into named apps, gives each
/// its peer ID (the SHA-256 of its certificate), records the addresses it is seen from and reports, and
/// keeps sessions alive. The server identity is a static Diffie-Hellman key kept in a file, so its
/// fingerprint is stable across restarts.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp serve                                  listen on 0.0.0.0:1935 and [::]:1935\n",
    "  rtmfp serve --listen 127.0.0.1:19350 --json  one address, events as JSON lines\n",
    "  rtmfp serve --ephemeral --max-sessions 5000  fresh identity, capped sessions\n",
    "  rtmfp serve --ephemeral --handshake-rate 0   for load tests from one machine\n\n",
    "Logs: -v adds each session and connection; refused handshakes are logged at once (at most\n",
    "one line a second per reason) and dropped datagrams are summed up by reason every 10 s.\n\n",
    "Exit codes:\n",
    "  0  stopped by SIGINT/SIGTERM after closing sessions\n",
    "  1  could not bind, or bad identity file\n",
    "  2  usage error"
))]
pub struct ServeArgs {
    /// Address to listen on (repeatable): IP:PORT, [IPv6]:PORT or HOST:PORT (resolved once, at
    /// start). Default: 0.0.0.0:1935 and [::]:1935.
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,

    /// Identity key file; created on first run. Default: $XDG_DATA_HOME/rtmfp/server.key
    /// (or ~/.local/share/rtmfp/server.key).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "ephemeral",
        env = "RTMFP_IDENTITY"
    )]
    pub identity: Option<PathBuf>,

    /// Use a fresh in-memory identity instead of a key file.
    #[arg(long)]
    pub ephemeral: bool,

    /// Most sessions at once; further handshakes are refused (and logged).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_sessions: usize,

    /// Most new handshakes per second from one IP address (0 = unlimited).
    ///
    /// Each handshake costs the server a Diffie-Hellman computation, so this bounds what one
    /// address can make it spend. But many users can share one address behind a carrier-grade
    /// NAT, and they reconnect together after an outage: at N per second, 10,000 of them take
    /// 10,000/N seconds to get back in. The default (200) lets that happen within a minute while
    /// one flooding address gets 200 DH computations a second at most. Load-testing your own
    /// server from one machine? Use 0, or the test measures this limit, not the server.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub handshake_rate: u32,

    /// Keepalive period sent to clients, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub keepalive: u64,

    /// Threads for handshake Diffie-Hellman work, off the packet path. Default: one per spare core
    /// (at least 1); 0 runs it inline on the packet thread. When they are all busy, new handshakes
    /// are dropped (clients resend) rather than queued, and no one address gets more than its share.
    #[arg(long, value_name = "N")]
    pub crypto_threads: Option<usize>,

    /// With --ephemeral: reuse the server's ephemeral DH key for new sessions for up to this long
    /// (e.g. 10s, 1m), halving the cost of a handshake. Trade-off: the sessions sharing a key lose
    /// forward secrecy between them; whoever later obtains that key (it lives in memory for this
    /// window) can decrypt all of them. Default: a fresh key per session.
    #[arg(long, value_name = "T", value_parser = parse_duration, requires = "ephemeral")]
    pub dh_key_lifetime: Option<Duration>,

    /// Write one JSON object per event on stdout (logs stay on stderr).
    ///
    /// Every object has an "event" field and a "ts" timestamp (RFC 3339, UTC): identity
    /// (fingerprint, source), listening (addr, fingerprint), session_opened (session, peer_id,
    /// addr), connect (session, peer_id, addr, app, tc_url, object_encoding), set_peer_info
    /// (session, peer_id, addresses), introduction (from, target, addresses), client_closed
    /// (session, peer_id, reason: control_flow_closed or control_flow_rejected, code), session_closed
    /// (session, peer_id, reason), refused (from, reason), dropped (datagrams, by_reason), error
    /// (session, peer_id, error, closed; or fatal, error), shutdown (signal), stopped (counters).
    #[arg(long)]
    pub json: bool,
}

/// How strongly to negotiate Diffie-Hellman.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DhChoice {
    /// The strongest group both ends support.
    Auto,
    /// 1024-bit MODP group 2, the only one Flash Player uses.
    #[value(name = "2")]
    G2,
    /// 1536-bit MODP group 5.
    #[value(name = "5")]
    G5,
    /// 2048-bit MODP group 14.
    #[value(name = "14")]
    G14,
    /// 4096-bit MODP group 16.
    #[value(name = "16")]
    G16,
}

/// Connect to an RTMFP server and report what happened.
///
/// Performs the handshake and a Flash NetConnection `connect` to the app in the URL, sends `setPeerInfo`
/// with this host's addresses, and reports: our peer ID, the server's fingerprint, the far address, our
/// local and reflexive addresses, RTT, handshake and connect times, the DH group, whether HMAC and
/// session sequence numbers were negotiated, and the server's info object. Then it closes the session
/// in order.
///
/// Flash-era servers (MonaServer, Cumulus, Cirrus) are recognised by their certificate and keyed
/// as Flash Player would (DH group 2, single-key certificate); the report says so. `connect`
/// announces objectEncoding 3, as Flash Player does, and accepts AMF0 replies.
///
/// With --json every line is one object with a `type` (times in milliseconds): `connect` (url,
/// far_address, local_addresses, observed_address, peer_id, server_fingerprint, dh_group,
/// dh_reason (negotiated or flash_era_server), hmac{send,recv}, sseq{send,recv}, handshake_ms,
/// connect_ms, ping_ms (the RTT), srtt_ms (the transport's estimate, which includes the server's
/// ack delay), keepalive{server_ms,peer_ms}, server_info), `ping` (seq, rtt_ms, lost, late),
/// `ping_summary` (sent, received, late, lost, min_ms, avg_ms, max_ms), `load` (sessions,
/// concurrency, succeeded, failed, failures{KIND: n}, cancelled, not_started, interrupted,
/// keying_resends, throttled (evidence, or null), elapsed_s, sessions_per_s, handshake_ms and
/// connect_ms as {p50,p90,p99,max}), and `error` (phase: input, resolve, hello, keying, connect or
/// session; kind: resolve, no_answer, unreachable, not_rtmfp, no_keying, crypto, redirected,
/// server_full, rejected, no_reply, closed, protocol or interrupted; message; possible (causes
/// that fit); redirected_to; for rejections also code, description and info).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp connect rtmfp://127.0.0.1/live\n",
    "  rtmfp connect rtmfp://example.net:1935/app --json\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --count 5 --interval 1     ping-like RTT reports\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --sessions 1000 --concurrency 16 --dh-group 2\n\n",
    "Load-testing a server you run: start it without its per-address handshake limit\n",
    "(rtmfp serve --handshake-rate 0), or the run measures the limiter; the summary says when\n",
    "handshakes were refused or throttled, and by what evidence.\n\n",
    "SIGINT/SIGTERM: closes the session(s) in order and prints what was measured so far. An\n",
    "interrupted --count or --hold run exits as if complete; an interrupted setup or load run\n",
    "exits 130 (cancelled setups are not counted as failures).\n\n",
    "Exit codes:\n",
    "  0    connected (all sessions, with --sessions)\n",
    "  1    could not bind or create an identity\n",
    "  2    usage error (bad option or URL, URL too long for the handshake)\n",
    "  3    host name could not be resolved\n",
    "  4    no answer within --timeout, port unreachable, or redirected to nowhere\n",
    "  5    rejected by the server\n",
    "  6    protocol or handshake failure (the error names the phase and what was seen)\n",
    "  130  interrupted before connecting, or during a load run"
))]
pub struct ConnectArgs {
    /// rtmfp://host[:port]/app[?query] (port 1935 if not given).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Give up after this long without a connection (e.g. 5s, 500ms).
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Keep the session and report RTT (RTMFP ping) this many times, then a min/avg/max summary.
    #[arg(short, long, value_name = "N")]
    pub count: Option<u32>,

    /// Time between RTT probes with --count (at least 10ms). A reply that comes after the next
    /// probe left is reported late, not lost; a probe is lost after 2 s (or 3 intervals).
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Load test: open this many sessions (handshake + connect, closed once answered) and report
    /// setup-time percentiles, sessions per second and failures by kind.
    #[arg(long, value_name = "N", conflicts_with = "count")]
    pub sessions: Option<u32>,

    /// Sessions being set up at once with --sessions. Each slot has its own UDP port and client
    /// identity, since servers key connections by peer ID.
    #[arg(long, value_name = "C", default_value_t = 1, requires = "sessions")]
    pub concurrency: u32,

    /// With --sessions: keep every connected session open (one UDP port and identity each) until
    /// interrupted, e.g. to measure server memory; the summary is printed once all are set up.
    #[arg(long, requires = "sessions")]
    pub hold: bool,

    /// Diffie-Hellman group to offer. `auto`: the strongest both ends support, and Flash
    /// Player's group 2 with its single-key certificate for servers whose certificate is Flash-era
    /// (MonaServer, Cumulus), which key with nothing else.
    #[arg(long, value_enum, default_value_t = DhChoice::Auto)]
    pub dh_group: DhChoice,

    /// Threads for handshake Diffie-Hellman work with --sessions. Default: one per spare core (at
    /// least 1); 0 runs it inline.
    #[arg(long, value_name = "N")]
    pub crypto_threads: Option<usize>,

    /// Write the report as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `--listen`: an IP socket address, or HOST:PORT resolved now (the first
/// address it has).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let hint = "use IP:PORT, [IPv6]:PORT or HOST:PORT, e.g. 127.0.0.1:1935 or [::1]:1935";
    if !s.contains(':') || s.ends_with(':') {
        return Err(format!("{s:?} has no port ({hint})"));
    }
    use std::net::ToSocketAddrs;
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address ({hint})")),
        Err(e) => Err(format!("cannot resolve {s:?}: {e} ({hint})")),
    }
}

/// Parses "250ms", "5s", "2m" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s or m)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn listen_addresses_resolve_or_explain() {
        assert_eq!(
            parse_listen("127.0.0.1:1935").unwrap(),
            "127.0.0.1:1935".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen("localhost:1935").unwrap().ip().is_loopback());
        assert!(parse_listen("localhost").unwrap_err().contains("no port"));
        assert!(
            parse_listen("no.such.host.invalid:1")
                .unwrap_err()
                .contains("e.g.")
        );
    }
}
