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
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (I/O, identity file, internal error)
  2  usage error
  3  host name could not be resolved
  4  no answer (nothing listening, or UDP blocked)
  5  rejected by the server (status code printed; \"server full\" when at capacity)
  6  protocol or handshake failure";

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
    "  rtmfp serve --ephemeral --max-sessions 5000  fresh identity, capped sessions\n\n",
    "Exit codes:\n",
    "  0  stopped by SIGINT/SIGTERM after closing sessions\n",
    "  1  could not bind, or bad identity file\n",
    "  2  usage error"
))]
pub struct ServeArgs {
    /// Address to listen on (repeatable). Default: 0.0.0.0:1935 and [::]:1935.
    #[arg(short, long = "listen", value_name = "ADDR")]
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

    /// Most new handshakes per second from one source prefix (see --source-prefix-v4/-v6; 0 =
    /// unlimited).
    #[arg(long, value_name = "N", default_value_t = 50)]
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
    /// Every object has an "event" field: identity (fingerprint, source), listening (addr,
    /// fingerprint), session_opened (session, peer_id, addr), connect (session, peer_id, addr, app,
    /// tc_url, object_encoding), set_peer_info (session, peer_id, addresses), introduction (from,
    /// target, addresses), session_closed (session, peer_id, reason), refused (from, reason), error
    /// (session, peer_id, error, closed; or fatal, error), shutdown (signal), stopped (counters).
    #[arg(long)]
    pub json: bool,

    /// Refuse clients that do not authenticate every packet with HMAC-SHA-256. By default HMAC is
    /// used with every client that supports it (rtmfp-cpp, rtmfp) and left off for Flash-class
    /// clients (Flash Player, AIR, librtmfp), which only offer it on request.
    #[arg(long)]
    pub require_hmac: bool,

    /// Refuse clients that do not number their packets (session sequence numbers, which stop
    /// replays). Same default as for HMAC.
    #[arg(long)]
    pub require_sseq: bool,

    /// Prefix length that makes one IPv4 source for every per-source limit (handshake rate,
    /// half-open sessions, answer budgets, fair share of key computation).
    #[arg(long, value_name = "BITS", default_value_t = 32, value_parser = clap::value_parser!(u8).range(8..=32))]
    pub source_prefix_v4: u8,

    /// Prefix length that makes one IPv6 source (a host usually owns a whole /64).
    #[arg(long, value_name = "BITS", default_value_t = 64, value_parser = clap::value_parser!(u8).range(16..=128))]
    pub source_prefix_v6: u8,

    /// Diffie-Hellman work per second, in group-2 key computations (a group-16 one costs 50):
    /// above it new handshakes are dropped before any computation, and each source prefix gets a
    /// fair share. 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub keying_budget: u32,
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
/// With --json every line is one object with a `type` (times in milliseconds): `connect` (url,
/// far_address, local_addresses, observed_address, peer_id, server_fingerprint, dh_group,
/// hmac{send,recv}, sseq{send,recv}, handshake_ms, connect_ms, srtt_ms, ping_ms,
/// keepalive{server_ms,peer_ms}, server_info), `ping` (seq, rtt_ms, lost), `ping_summary` (sent,
/// received, min_ms, avg_ms, max_ms), `load` (sessions, concurrency, succeeded, failed,
/// failures{no_answer,rejected,protocol,server_full}, elapsed_s, sessions_per_s, handshake_ms and connect_ms as
/// {p50,p90,p99,max}), and `error` (kind: resolve, no_answer, rejected, server_full or protocol; message; for
/// rejections also code, description and info).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp connect rtmfp://127.0.0.1/live\n",
    "  rtmfp connect rtmfp://example.net:1935/app --json\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --count 5 --interval 1     ping-like RTT reports\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --sessions 1000 --concurrency 16 --dh-group 2\n\n",
    "Exit codes:\n",
    "  0  connected (all sessions, with --sessions)\n",
    "  2  usage error\n",
    "  3  host name could not be resolved\n",
    "  4  no answer within --timeout\n",
    "  5  rejected by the server\n",
    "  6  protocol or handshake failure"
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

    /// Time between RTT reports with --count.
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

    /// Diffie-Hellman group to offer. MonaServer, Cumulus and other Flash-era servers need 2
    /// (Flash Player's exact single-key certificate).
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
}
