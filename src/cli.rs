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
    /// `subscribe`: the stream started, but no media or data arrived.
    pub const NOTHING_RECEIVED: i32 = 7;
    /// Interrupted (SIGINT or SIGTERM) before the work was done; what was
    /// done so far is reported first. (128 + SIGINT, as shells report it.)
    pub const INTERRUPTED: i32 = 130;
    /// Connected to the server, but a peer could not be reached directly (unknown to the
    /// server, or no candidate answered), or a presence call (name) was refused.
    pub const PEER: i32 = 8;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    other failure (I/O, bind, identity file, internal error)
  2    usage error (bad option, URL or input)
  3    host name could not be resolved
  4    no answer, port unreachable, or redirected to nowhere
  5    rejected by the server (status code printed; \"server full\" when at capacity)
  6    protocol or handshake failure (the error says which phase)
  7    subscribe: the stream started, but no media or data arrived
  8    peer unreachable: unknown to the server, or no direct path (reason printed)
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
    Publish(PublishArgs),
    Subscribe(SubscribeArgs),
    Send(SendArgs),
    ProbeNat(ProbeNatArgs),
}

/// Run the rendezvous server and media relay.
///
/// Accepts Flash-compatible clients (Flash Player, AIR, librtmfp, rtmfp-cpp) into named apps, gives each
/// its peer ID (the SHA-256 of its certificate), records the addresses it is seen from and reports, and
/// keeps sessions alive. The server identity is a static Diffie-Hellman key kept in a file, so its
/// fingerprint is stable across restarts.
///
/// It relays live streams: one publisher per stream name in each app (a publish with a higher
/// `?priority=N`, at most 0, preempts one without), any number of subscribers, each started at once
/// with the stream's metadata, sequence headers and current keyframe, timestamps rebased to start
/// near 0 (`?asis` keeps them). `sha256:<hex>` of a name plays it but cannot publish it. A slow
/// subscriber loses whole frames (then waits for a keyframe); it never slows the others.
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

    /// Most new handshakes per second from one source prefix (see --source-prefix-v4/-v6; 0 =
    /// unlimited).
    ///
    /// Each handshake costs the server a Diffie-Hellman computation, so this bounds what one
    /// prefix can make it spend. But many users can share one address behind a carrier-grade
    /// NAT, and they reconnect together after an outage: at N per second, 10,000 of them take
    /// 10,000/N seconds to get back in. The default (200) lets that happen within a minute while
    /// one flooding prefix gets 200 DH computations a second at most (--keying-budget bounds the
    /// total). Load-testing your own server from one machine? Use 0, or the test measures this
    /// limit, not the server.
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
    /// (fingerprint, source), listening (addr, fingerprint), probe_listening (addr), session_opened
    /// (session, peer_id, addr), connect (session, peer_id, addr, app, tc_url, object_encoding),
    /// set_peer_info (session, peer_id, addresses), introduction (from, target, addresses),
    /// introduction_denied (from, target, refused), peer_name (session, peer_id, name),
    /// client_closed (session, peer_id, reason: control_flow_closed or control_flow_rejected, code),
    /// session_closed (session, peer_id, reason), refused (from, reason), dropped (datagrams,
    /// by_reason), error (session, peer_id, error, closed; or fatal, error), publish (session, app,
    /// stream, subscribers), unpublish (session, app, stream, subscribers, messages, reason if lost or preempted), play (session,
    /// app, stream, subscribers, published), stop (session, app, stream, subscribers, sent, dropped),
    /// bad_name (session, app, stream, reason), shutdown (signal), stopped (counters), metrics
    /// (addr, url) with --metrics, stats (figures) with --stats-interval.
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

    /// Diffie-Hellman work per second, in group-2 key computations (a group-16 one costs 20):
    /// above it new handshakes are dropped before any computation, and each source prefix gets a
    /// fair share. 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub keying_budget: u32,

    /// Answer NAT probes on this extra address (repeatable): STUN Binding requests (RFC 5389, with the
    /// RFC 5780 attributes OTHER-ADDRESS and RESPONSE-ORIGIN, CHANGE-REQUEST honoured among the probe
    /// addresses). Give two IPs and two ports, e.g. A:3478 A:3479 B:3478 B:3479, for a full RFC 5780
    /// server at A:3478. Off unless given.
    ///
    /// The same sockets run the RTMFP connectivity check of rtmfp-cpp's conncheck for every client that
    /// sends setPeerInfo: an IHello from the listen IP on another port, one from another IP, and an
    /// FIHello asking for the answer at a third address (another IP, else another port of the second);
    /// then onStatus NetConnection.ConnectivityCheck.Results with conncheck's keys. Each probe is sent at
    /// most 5 times, only to the client's session address. Needs a specific --listen IP (or the first
    /// probe address stands for it).
    #[arg(long = "probe-addr", value_name = "ADDR")]
    pub probe_addr: Vec<SocketAddr>,
    /// Run the RTMFP connectivity check only for clients of this app (repeatable); without it, every
    /// client that sends setPeerInfo is checked, as rtmfp-cpp's conncheck does.
    #[arg(long = "probe-app", value_name = "APP", requires = "probe_addr")]
    pub probe_app: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9935; port 0 picks one,
    /// reported in the log and as a JSON "metrics" event).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// A publisher whose session sends nothing at all for this long, although the server pings it
    /// (from a third of this on), is taken as gone (killed, unplugged): its streams are unpublished
    /// at once, subscribers get NetStream.Play.UnpublishNotify naming the silence, and its session
    /// is closed. Without it a vanished publisher is only noticed when its session times out. 0 =
    /// leave it to the session.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub publisher_timeout: Duration,

    /// Introduce clients of different apps to each other. By default an introduction is only
    /// made between two clients connected to the same app; anything else is answered as if the
    /// target were unknown.
    #[arg(long)]
    pub introduce_across_apps: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Watching a running command: the dashboard and periodic statistics. Shared by every command
/// that runs endpoints (flattened into its arguments).
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream
    /// ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views,
    /// arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish,
    /// subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q
    /// ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and
    /// --log-file).
    #[arg(long, conflicts_with_all = ["json", "stats_interval"])]
    pub dashboard: bool,

    /// Dashboard refresh period.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration, requires = "dashboard")]
    pub refresh: Duration,

    /// With --dashboard, also append log lines to this file.
    #[arg(long, value_name = "FILE", requires = "dashboard")]
    pub log_file: Option<PathBuf>,

    /// Print the dashboard's aggregate figures (sessions by state, packets, bytes, drops by
    /// reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per
    /// second) as one JSON object per line on stdout, every DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,
}

impl Default for MonitorArgs {
    fn default() -> Self {
        Self {
            dashboard: false,
            refresh: Duration::from_millis(250),
            log_file: None,
            stats_interval: None,
        }
    }
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
    "  rtmfp connect rtmfp://127.0.0.1/live --sessions 1000 --concurrency 16 --dh-group 2\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --name bob --stay 60s        be reachable as bob\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --peer bob --json            direct session to bob\n",
    "  rtmfp connect rtmfp://127.0.0.1/live --list-peers                 who is in the app\n\n",
    "Peers and presence:\n",
    "  --peer opens a direct session to another client of the same app through the server (RTMFP\n",
    "  introduction: an IHello for the peer ID goes to the server, which answers with a Redirect to the\n",
    "  peer's addresses and forwards the request so the peer answers too), and reports which path won\n",
    "  (host: an address the peer reported; reflexive: the address the server sees it from), the time to\n",
    "  open and the RTT, or why it failed. A server that does not know the peer answers at once with a\n",
    "  Redirect listing only 0.0.0.0:0 (MonaServer's form).\n",
    "  Names are TC calls on the NetConnection, which a Flash/AIR application can make with\n",
    "  NetConnection.call (each a transaction; command object null; failures are _error with\n",
    "  NetConnection.Call.Failed and a description):\n",
    "    setPeerName(name)  -> _result(name); names are per app, first come first served, unique\n",
    "                          regardless of case, released when the session ends\n",
    "    lookupPeer(name)   -> _result(peerIdHex)\n",
    "    listPeers()        -> _result([{peerId, name, connectedSeconds}, ...]), oldest first\n\n",
    "Load-testing a server you run: start it without its per-address handshake limit\n",
    "(rtmfp serve --handshake-rate 0), or the run measures the limiter; the summary says when\n",
    "handshakes were refused or throttled, and by what evidence.\n\n",
    "SIGINT/SIGTERM: closes the session(s) in order and prints what was measured so far. An\n",
    "interrupted --count or --hold run exits as if complete; an interrupted setup or load run\n",
    "exits 130 (cancelled setups are not counted as failures).\n\n",
    "Exit codes:\n",
    "  0    connected (all sessions, with --sessions; every --peer reached)\n",
    "  1    could not bind or create an identity\n",
    "  2    usage error (bad option or URL, URL too long for the handshake)\n",
    "  3    host name could not be resolved\n",
    "  4    no answer within --timeout, port unreachable, or redirected to nowhere\n",
    "  5    rejected by the server\n",
    "  6    protocol or handshake failure (the error names the phase and what was seen)\n",
    "  8    a --peer could not be reached, or --name was refused\n",
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
    /// (MonaServer, Cumulus), which key with nothing else. Peer sessions we open (--peer) prefer
    /// group 14 (2048-bit) over 16: both sides pay the exponentiations while the user waits (about
    /// 0.3 ms each instead of 1.5 ms here; opening takes ~1 ms on loopback instead of ~2.6), and
    /// 2048 bits is the accepted minimum (1024-bit group 2 is within reach of precomputation).
    /// Give 16 to insist on 4096 bits. Flash Player and librtmfp peers key only with group 2 and
    /// read only Flash's single-key certificate: with `auto`, a peer we open a session to that
    /// presents that certificate is answered with a Flash Player identity (it then knows us by that
    /// identity's peer ID; the report says so). To be reachable by them, use --dh-group 2.
    #[arg(long, value_enum, default_value_t = DhChoice::Auto)]
    pub dh_group: DhChoice,

    /// Threads for handshake Diffie-Hellman work with --sessions. Default: one per spare core (at
    /// least 1); 0 runs it inline.
    #[arg(long, value_name = "N")]
    pub crypto_threads: Option<usize>,

    /// Write the report as one JSON object per line.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,

    #[command(flatten)]
    pub peer: PeerArgs,
}

/// Peer-to-peer and presence options (shared by commands that talk to peers).
///
/// JSON lines: `connected` (server, peer_id, observed_address, connect_ms), `name` (name, ok,
/// message), `peers` (peers: [{peer_id, name, connected_s}]), `peer_attempt` (target, peer_id,
/// candidates: [{addr, kind, after_ms}]), `peer_opened` (target, peer_id, addr, path, elapsed_ms,
/// rtt_ms, server_rtt_ms: a round trip on each session just after opening, dh_group, candidates), `peer_failed` (target, peer_id, unknown, message, elapsed_ms, candidates),
/// `peer_incoming` (peer_id, addr, accepted), `peer_closed` (peer_id, reason), `data` (peer_id,
/// timestamp, values: a data message a peer sent us directly with `send --peer`).
#[derive(Debug, Args, Default, Clone)]
pub struct PeerArgs {
    /// Open a direct session to this peer (64-hex-digit peer ID, or a name registered with --name)
    /// through the server and report the path and timings. Repeatable.
    #[arg(long = "peer", value_name = "PEERID|NAME", conflicts_with = "sessions")]
    pub peers: Vec<String>,

    /// Register this name in the app, so others can use --peer NAME.
    #[arg(long, value_name = "NICK", conflicts_with = "sessions")]
    pub name: Option<String>,

    /// Print who is present in the app: names, peer IDs, how long connected.
    #[arg(long, conflicts_with = "sessions")]
    pub list_peers: bool,

    /// Stay connected this long after the rest is done, accepting peer sessions and printing the data
    /// messages peers send us (e.g. 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "sessions")]
    pub stay: Option<Duration>,

    /// Do not send setPeerInfo: the server will not introduce peers to us.
    #[arg(long, conflicts_with = "sessions")]
    pub no_introductions: bool,

    /// Accept at most this many peer sessions opened to us at once.
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,

    /// Accept peer sessions only from this peer ID (repeatable).
    #[arg(long = "allow", value_name = "PEERID")]
    pub allow: Vec<String>,
}

impl PeerArgs {
    /// Whether any peer/presence option asks for the peer-aware connection.
    pub fn wanted(&self) -> bool {
        !self.peers.is_empty()
            || self.name.is_some()
            || self.list_peers
            || self.stay.is_some()
            || self.no_introductions
    }
}

/// Options every stream command shares: where the stream is and how to connect.
#[derive(Debug, Args)]
pub struct StreamTargetArgs {
    /// rtmfp://host[:port]/app/STREAM (as ffmpeg and librtmfp write it), or
    /// rtmfp://host[:port]/app#STREAM (as tcconn and tcpublish write it).
    #[arg(value_name = "URL")]
    pub url: String,

    /// The stream name, for apps whose names contain slashes: the whole URL path is then the app.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,

    /// Give up after this long without the stream started (connect, createStream, publish/play).
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Diffie-Hellman group to offer. With `auto`, a server session takes the strongest common
    /// group (Flash-era servers such as MonaServer and Cumulus are keyed as Flash Player would); a
    /// peer session we open (--peer) prefers group 14 (2048-bit): about a fifth of group 16's cost
    /// on both sides while the peer session opens, and well above 1024-bit group 2. Flash Player
    /// and librtmfp peers key only with group 2 and read only Flash's single-key certificate: with
    /// `auto`, a peer we open a session to that presents that certificate is answered with a Flash
    /// Player identity. To be reachable by them (publish --p2p), use --dh-group 2.
    #[arg(long, value_enum, default_value_t = DhChoice::Auto)]
    pub dh_group: DhChoice,
}

/// Publish a live FLV stream from a file or stdin.
///
/// Connects, creates a stream, publishes it live and sends every FLV tag as an RTMP message: audio and
/// video on their own flows with lifetimes (stale frames are abandoned under congestion, as a live
/// stream should), script data reliably (onMetaData as @setDataFrame, as tcpublish does). Tags are
/// paced by their timestamps in real time unless --as-fast-as-possible. Exits once every message was
/// delivered (acknowledged) or abandoned, after an orderly unpublish.
///
/// With --p2p the stream goes directly to peers instead (Flash's directConnections, spec 04 §8): the
/// server only introduces them. Each peer that plays the stream by our peer ID or --name (`rtmfp
/// subscribe --peer`) gets it on its own direct session, starting with the metadata, sequence headers
/// and current keyframe, as from a server; the server carries no media. --print-peer-id prints our
/// peer ID on stdout once connected, for scripts; --max-peers and --allow limit who may play.
///
/// With --json, progress lines `{"type":"progress", position_s, frames, audio, video, data, bytes,
/// bitrate_bps, queued_bytes}` each second, `{"type":"status", code, ...}` for stream events and a
/// final `{"type":"published", ...}`; errors as `{"type":"error", kind, message}`. With --p2p also
/// `{"type":"connected", peer_id, ...}` and the peer lines of `connect --peer` (`peer_incoming`,
/// `peer_closed`).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp publish rtmfp://127.0.0.1/live/cam movie.flv\n",
    "  rtmfp publish --p2p --print-peer-id --name cam1 rtmfp://127.0.0.1/live/cam movie.flv\n",
    "  ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=25 -c:v libx264 -g 50 -f flv - | rtmfp publish rtmfp://127.0.0.1/live/cam -\n",
    "  rtmfp publish 'rtmfp://127.0.0.1/live#cam?priority=0' movie.flv --loop inf\n\n",
    "Exit codes:\n",
    "  0  everything published and acknowledged\n",
    "  1  cannot read the file (malformed FLV: the byte offset is printed)\n",
    "  2  usage error\n",
    "  3  host name could not be resolved\n",
    "  4  no answer within --timeout, port unreachable, or redirected to nowhere\n",
    "  5  rejected: connect refused, or the stream name (NetStream.Publish.BadName)\n",
    "  6  protocol failure, or the session died while publishing (with --p2p: the server session)\n",
    "  130  interrupted (with --loop inf: only before the first frame went out; after, SIGINT/SIGTERM is\n",
    "       how an endless stream ends, exit 0)"
))]
pub struct PublishArgs {
    #[command(flatten)]
    pub target: StreamTargetArgs,

    /// FLV file to publish, or - for stdin.
    #[arg(value_name = "FILE")]
    pub file: String,

    /// Pace at this multiple of real time.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        conflicts_with = "as_fast_as_possible"
    )]
    pub speed: f64,

    /// No pacing: send as fast as the network takes it (media is then sent reliably).
    #[arg(long)]
    pub as_fast_as_possible: bool,

    /// Publish the file this many times (a number, or inf); timestamps continue across loops.
    #[arg(long = "loop", value_name = "N|inf", default_value = "1", value_parser = parse_loops)]
    pub loops: Loops,

    /// Lifetime of video messages before they are abandoned.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub video_lifetime: Duration,

    /// Lifetime of audio messages before they are abandoned.
    #[arg(long, value_name = "DURATION", default_value = "2.2s", value_parser = parse_duration)]
    pub audio_lifetime: Duration,

    /// Progress and events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Publish directly to the peers that play the stream (directConnections), not to the server.
    #[arg(long)]
    pub p2p: bool,

    /// Print our peer ID (64 hex digits) on stdout once connected.
    #[arg(long, requires = "p2p")]
    pub print_peer_id: bool,

    /// Accept at most this many peer sessions at once.
    #[arg(long, value_name = "N", requires = "p2p")]
    pub max_peers: Option<usize>,

    /// Accept peer sessions only from this peer ID (repeatable). Such a publisher never relays
    /// through the server (a server stream is open to the whole app).
    #[arg(long = "allow", value_name = "PEERID", requires = "p2p")]
    pub allow: Vec<String>,

    /// Register this name in the app, so peers can play with --peer NAME.
    #[arg(long, value_name = "NICK", requires = "p2p")]
    pub name: Option<String>,

    /// Start reading FILE only once this many peers play (each then gets the whole stream).
    #[arg(long, value_name = "N", requires = "p2p")]
    pub wait_peers: Option<usize>,

    /// Do not let the server introduce peers to us (our addresses stay private): peers that play us
    /// then get the stream through the server (subscribe --fallback relay).
    #[arg(long, requires = "p2p")]
    pub no_introductions: bool,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Play a live stream and write it as FLV.
///
/// Connects, creates a stream and plays it; the server answers with Play.Reset, Play.Start and, once
/// the stream is published, its metadata, sequence headers and the current keyframe, then live media.
/// Audio, video and data are written as FLV tags (to a file, or to stdout with -o -, e.g. into ffplay);
/// data messages are also printed as JSON lines (on stderr; on stdout with --json unless -o -). Ends
/// when the publisher stops (NetStream.Play.UnpublishNotify), after --duration or --frames, or on
/// SIGINT, then prints a summary: frames by type, bytes, bit rate, gaps, late frames, the time to
/// the first frame, and how the stream ended ("ended": the server's status code such as
/// NetStream.Play.UnpublishNotify, "duration", "frames" or "wait" for our own limits, or the
/// failure; "reason" says more).
///
/// A publisher that vanishes without closing (killed, unplugged) is reported by an rtmfp server
/// within its --publisher-timeout (3 s by default) plus at most a quarter second and a round
/// trip: the stream ends with NetStream.Play.UnpublishNotify and the reason ("Publisher lost: no
/// packet from it for 3.0 s (pinged)"). Other servers notice only when the publisher's session
/// times out.
///
/// With --peer PEERID|NAME the stream is played directly from that peer (a `publish --p2p`, or a Flash
/// or librtmfp peer publishing with directConnections): the server introduces us, a direct session
/// is punched through both NATs, and play goes to the peer on stream 2000001. The peer lines of
/// `connect --peer` report the path and timings. When no direct session opens within
/// --direct-timeout, --fallback relay (the default) asks the server to have the publisher publish the
/// stream to the server too (our own TC call, answered only for an `rtmfp publish --p2p`; a Flash or
/// librtmfp publisher simply gets no relay) and plays it from there: a `relayed` line says so and why
/// direct failed, and the summary has `path` (direct or relayed) and `direct_failed`. With --fallback
/// none, or when the relay is refused, it ends with exit code 8 and the reasons.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp subscribe rtmfp://127.0.0.1/live/cam -o cam.flv --duration 10s\n",
    "  rtmfp subscribe --peer cam1 rtmfp://127.0.0.1/live/cam -o cam.flv\n",
    "  rtmfp subscribe --peer cam1 --peer cam1-backup rtmfp://127.0.0.1/live/cam -o cam.flv\n",
    "  rtmfp subscribe rtmfp://127.0.0.1/live/cam -o - | ffplay -\n",
    "  rtmfp subscribe 'rtmfp://127.0.0.1/live/cam?asis' --frames 100 --json\n",
    "  rtmfp subscribe rtmfp://127.0.0.1/live/cam --len 5 -o clip.flv   5 s of media, server-timed\n\n",
    "Exit codes:\n",
    "  0  media or data arrived\n",
    "  2  usage error\n",
    "  3  host name could not be resolved\n",
    "  4  no answer within --timeout, port unreachable, or redirected to nowhere\n",
    "  5  rejected (connect or play refused)\n",
    "  6  protocol failure, or the session died\n",
    "  7  the stream started but nothing arrived (no publisher within --wait)\n",
    "  8  --peer: the peer is unknown to the server or unreachable (with several: every one)\n",
    "  130  interrupted before anything arrived"
))]
pub struct SubscribeArgs {
    #[command(flatten)]
    pub target: StreamTargetArgs,

    /// Write the stream as FLV to this file, or - for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,

    /// Stop this long after the first frame.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many audio and video frames.
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,

    /// How long to wait for a publisher (for the first frame or data message).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,

    /// NetStream.play's start: -2 live (or recorded; the default), -1 live only, 0 or more asks for
    /// recorded content from that second on. rtmfp serve relays live streams only and answers a
    /// recording request with NetStream.Play.StreamNotFound (exit 5).
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    pub start: Option<f64>,

    /// NetStream.play's len: ask the server for this many seconds of media, after which it ends
    /// the play with NetStream.Play.Stop; 0 asks for a single frame. Unlike --duration, the server
    /// counts, in media time.
    #[arg(long, value_name = "SECS")]
    pub len: Option<f64>,

    /// Data messages and the summary as JSON lines on stdout (on stderr with -o -).
    #[arg(long)]
    pub json: bool,

    /// Play directly from this peer (64-hex-digit peer ID, or a name registered with --name).
    /// Repeatable: alternatives for the same stream (e.g. two publishers of one camera). All are
    /// opened and played at once; the first to start playing wins, the others are closed. The
    /// `peer_result` line names the winner and why each other one lost (failed, refused, or
    /// slower); --fallback applies once every one has failed.
    #[arg(long, value_name = "PEERID|NAME")]
    pub peer: Vec<String>,

    /// Register this name in the app while playing.
    #[arg(long, value_name = "NICK", requires = "peer")]
    pub name: Option<String>,

    /// With --peer, when no direct session opens within --direct-timeout: relay (ask the server to
    /// have the publisher publish the stream to it too, and play it from there), or none (fail, exit 8).
    #[arg(long, value_enum, default_value_t = Fallback::Relay, requires = "peer")]
    pub fallback: Fallback,

    /// With --peer, how long the direct session may take to open.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, requires = "peer")]
    pub direct_timeout: Duration,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// What `subscribe --peer` does when no direct session opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Play through the server (our extension: the publisher must be an rtmfp publish --p2p).
    Relay,
    /// Fail with the reason (exit code 8).
    None,
}

/// Send data messages on a stream (NetStream.send).
///
/// Publishes the stream, sends HANDLER with the arguments (each a JSON value, encoded as AMF0: null,
/// true, 3.5, "text", [..], {..}) as a data message every subscriber receives in order, then
/// unpublishes once everything is acknowledged. With --stdin, every input line is one more message
/// for HANDLER: a JSON array is its argument list, any other JSON value its single argument.
///
/// With --peer PEERID|NAME the messages go directly to that peer over a direct session (stream
/// 2000001), not through the server; `rtmfp connect URL --stay DURATION` prints what peers send it
/// (`{"type":"data", peer_id, values}`).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp send rtmfp://127.0.0.1/live/chat onChat '\"hello\"' '{\"from\":\"me\"}'\n",
    "  rtmfp send --peer bob rtmfp://127.0.0.1/live/chat onChat '\"hi bob\"'\n",
    "  rtmfp send --peer bob --peer carol rtmfp://127.0.0.1/live/chat onChat '\"hi both\"'\n",
    "  printf '\"one\"\\n\"two\"\\n' | rtmfp send rtmfp://127.0.0.1/live/chat onChat --stdin\n\n",
    "Exit codes:\n",
    "  0  every message sent and acknowledged\n",
    "  2  usage error (an argument is not JSON)\n",
    "  3-6  as for publish (5: the stream name is taken)\n",
    "  8  --peer: a peer is unknown to the server or unreachable (the others still got everything)"
))]
pub struct SendArgs {
    #[command(flatten)]
    pub target: StreamTargetArgs,

    /// The handler name subscribers see (the first value of the data message).
    #[arg(value_name = "HANDLER")]
    pub handler: String,

    /// Arguments as JSON values.
    #[arg(value_name = "ARG")]
    pub args: Vec<String>,

    /// Read one message per line from stdin (after any ARGs given).
    #[arg(long)]
    pub stdin: bool,

    /// Events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Send directly to this peer (64-hex-digit peer ID, or a name registered with --name).
    /// Repeatable: every message goes to each peer (one opening late gets them all), a
    /// `peer_result` line per peer says how many it got or why it failed, and the exit code is 8
    /// if any failed.
    #[arg(long, value_name = "PEERID|NAME")]
    pub peer: Vec<String>,

    /// Register this name in the app while sending.
    #[arg(long, value_name = "NICK", requires = "peer")]
    pub name: Option<String>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// How many times to publish a file; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loops(pub Option<u64>);

/// Parses a loop count: a positive number or `inf`.
pub fn parse_loops(s: &str) -> Result<Loops, String> {
    match s.trim() {
        "inf" | "infinite" => Ok(Loops(None)),
        n => match n.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!(
                "not a loop count: {s:?} (a positive number or inf)"
            )),
            Ok(n) => Ok(Loops(Some(n))),
        },
    }
}

/// Name this host's NAT in RFC 4787 terms and predict which peers a direct session can reach.
///
/// Against an RFC 5780 STUN server (coturn's turnserver, or `rtmfp serve --probe-addr …`) it runs the
/// RFC 5780 tests: the public address seen by the server; whether the public port stays the same toward a
/// second server address and port (mapping: endpoint-independent, address-dependent or
/// address-and-port-dependent); whether answers from a changed address or port get in (filtering, the same
/// three kinds); whether the public port equals the local one (port preservation); whether a packet to our
/// own public address comes back (hairpinning); and, with --lifetime, how long an idle mapping lasts. Then
/// it names the NAT (full cone, restricted cone, port-restricted cone, symmetric) and prints which far NAT
/// kinds a direct (peer-to-peer) session can reach and which need a relay, each with the reason. IPv4 and
/// IPv6 are probed separately when the host name has both.
///
/// Evidence that does not fit together (answers from the wrong address, a server that ignores
/// CHANGE-REQUEST, conflicting answers) is reported as inconsistent and leaves that behaviour unknown.
///
/// With --json there is one line per address family: {"type":"nat", "url", "family" ("ipv4"|"ipv6"),
/// "server", "method":"stun", "elapsed_ms", "rtt_ms", "udp" (bool), "public_address", "local_address",
/// "nat" (bool|null), "mapping" and "filtering" ("endpoint_independent" | "address_dependent" |
/// "address_and_port_dependent" | null), "port_preserved", "hairpin" (bool|null), "class"
/// ("full_cone" | "restricted_cone" | "port_restricted_cone" | "symmetric" | "udp_blocked" | null),
/// "name" (familiar name), "consistent" (bool), "inconsistencies" and "notes" (lists of text),
/// "lifetime_s" ({"min","max"} bounds in seconds, or null), "p2p" (list of {"far", "direct",
/// "reason"})}; failures are {"type":"error", "kind", "message"}.
///
/// Against an RTMFP server that runs the connectivity check (rtmfp://host[:port]/app: rtmfp-cpp's
/// `conncheck`, or `rtmfp serve --probe-addr …`) it connects, sends setPeerInfo and answers the server's
/// probes: an IHello from the server's address on another port and one from another address (did an
/// unsolicited packet get in? that is the filtering), and an FIHello asking for an answer to a third
/// address (did our public port stay the same toward a new destination? that is the mapping). The server
/// reports what came back (NetConnection.ConnectivityCheck.Results) and the verdict is the same as over
/// STUN, with "method":"rtmfp" in the JSON; the check cannot tell address-dependent from
/// address-and-port-dependent mapping ("mapping":"address_or_address_and_port_dependent"), and does not
/// test hairpinning or the lifetime. Its JSON adds "conncheck": the server's results object as sent
/// (publicAddress, publicAddressIsLocal, …; null when the server sent none).
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  rtmfp probe-nat stun://stun.example.net          RFC 5780 server on port 3478\n",
    "  rtmfp probe-nat stun://192.0.2.10:3478 --json    one JSON line per address family\n",
    "  rtmfp probe-nat stun://192.0.2.10 --lifetime --lifetime-max 10m\n",
    "  rtmfp probe-nat rtmfp://192.0.2.10/app          RTMFP connectivity check (conncheck, serve --probe-addr)\n",
    "  rtmfp probe-nat rtmfp://192.0.2.10/app --peer bob   then try a direct session to peer \"bob\"\n\n",
    "Exit codes:\n",
    "  0  the probe ran (whatever the verdict)\n",
    "  1  local failure (no socket)\n",
    "  2  usage error (bad URL)\n",
    "  3  host name could not be resolved\n",
    "  4  no answer in any address family (UDP blocked, or no server there)\n",
    "  8  --peer: the server does not know that peer"
))]
pub struct ProbeNatArgs {
    /// stun://host[:port] (port 3478 if not given), or rtmfp://host[:port]/app (port 1935).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Give up waiting for the server's first answer after this long.
    #[arg(short, long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Also measure how long an idle mapping lasts (binary search on idle time: slow, up to about
    /// 8 x --lifetime-max).
    #[arg(long)]
    pub lifetime: bool,

    /// Longest idle time tried with --lifetime.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "lifetime")]
    pub lifetime_max: Duration,

    /// Probe IPv4 only.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Probe IPv6 only.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// Write the result as one JSON object per line (schema above).
    #[arg(long)]
    pub json: bool,

    /// After the probe (rtmfp:// only), try a direct session to this peer (peer ID, or a name it
    /// registered with `connect --name`) through the server's introduction, and report what spec 05
    /// §5.1 predicted from our NAT class against what happened, and what that says of the peer's NAT.
    /// JSON: {"type":"peer_check", "target", "peer_id", "our_class", "predicted": {"direct" (bool|null),
    /// "direct_with", "relay_with"}, "actual": {"direct", "addr", "path", "elapsed_ms", "rtt_ms" |
    /// "message"}, "agrees" (bool|null), "explanation"}. Exit 8 when the server does not know the peer.
    #[arg(long, value_name = "PEERID|NAME")]
    pub peer: Option<String>,

    /// With --peer: how long the direct session may take to open.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, requires = "peer")]
    pub peer_timeout: Duration,

    #[command(flatten)]
    pub monitor: MonitorArgs,
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
