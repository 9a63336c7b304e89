//! Watching the real binary: `serve --metrics` scraped while a real client
//! is connected (and checked by `promtool check metrics`), misbehaving
//! metrics clients, `--stats-interval` JSON lines, `--dashboard` refused off
//! a terminal, and the dashboard itself in tmux with a real `connect`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The next JSON line with `key` == `value`.
    fn wait_for(&self, key: &str, value: &str) -> Json {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {key}={value} line in time"));
            let v: Json = serde_json::from_str(&line).expect("JSON lines");
            if v[key] == value {
                return v;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn serve_with_metrics() -> (Proc, SocketAddr, SocketAddr) {
    let p = Proc::start(&[
        "serve",
        "--ephemeral",
        "--json",
        "--handshake-rate",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let listening = p.wait_for("event", "listening");
    let udp: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let m = p.wait_for("event", "metrics");
    let http: SocketAddr = m["addr"].as_str().unwrap().parse().unwrap();
    (p, udp, http)
}

#[test]
fn metrics_of_a_running_server_with_a_client() {
    let (_serve, udp, http) = serve_with_metrics();
    let url = format!("rtmfp://{udp}/live");
    let mut client = Proc::start(&[
        "connect",
        &url,
        "--json",
        "--count",
        "30",
        "--interval",
        "200ms",
    ]);
    client.wait_for("type", "connect");
    // Figures are at most a second old: poll until the session shows.
    let end = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (head, body) = http_get(http, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        if metric(&body, "rtmfp_sessions{state=\"open\"}") == Some(1.0)
            && metric(&body, "rtmfp_session_rtt_seconds_count").is_some_and(|n| n >= 1.0)
        {
            break body;
        }
        assert!(Instant::now() < end, "session never showed:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(metric(&page, "rtmfp_sessions_opened_total"), Some(1.0));
    assert_eq!(metric(&page, "rtmfp_connects_total"), Some(1.0));
    assert!(metric(&page, "rtmfp_packets_total{direction=\"in\"}").unwrap() >= 3.0);
    assert!(metric(&page, "rtmfp_bytes_total{direction=\"out\"}").unwrap() > 100.0);
    assert!(page.contains("rtmfp_dropped_packets_total{reason=\"decrypt\"}"));
    assert!(page.contains("# TYPE rtmfp_session_rtt_seconds histogram"));
    assert_eq!(metric(&page, "rtmfp_streams"), Some(0.0));
    promtool_check(&page);

    let (head, _) = http_get(http, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let _ = client.child.kill();
}

/// `promtool check metrics` (Debian's prometheus package; .ci/run installs
/// it) must accept the page without a lint complaint.
fn promtool_check(page: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var_os("RTMFP_NO_PROMTOOL").is_some() => {
            eprintln!("promtool not run: {e}");
            return;
        }
        Err(e) => panic!("promtool is needed (apt-get install prometheus): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {text}\n{page}");
    assert!(text.trim().is_empty(), "promtool lint: {text}");
}

#[test]
fn metrics_clients_that_stall_or_flood_do_not_block_scrapes() {
    let (_serve, _udp, http) = serve_with_metrics();
    // A request head past the size limit.
    let mut big = TcpStream::connect(http).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let junk = vec![b'a'; 9000];
    let _ = big.write_all(b"GET /metrics HTTP/1.1\r\nX: ");
    let _ = big.write_all(&junk);
    let mut resp = String::new();
    let _ = big.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    // Garbage and a wrong method.
    for (req, want) in [
        ("\r\n\r\n", "HTTP/1.1 400"),
        ("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
    ] {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(resp.starts_with(want), "{req:?}: {resp}");
    }
    // Silent clients that never send a request nor read hold every slot
    // for a few seconds; once they time out, scrapes succeed again.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(http).unwrap());
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(http) {
            s.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
            let mut resp = String::new();
            if s.read_to_string(&mut resp).is_ok() && resp.starts_with("HTTP/1.1 200") {
                assert!(resp.contains("rtmfp_uptime_seconds"));
                break;
            }
        }
        assert!(Instant::now() < end, "scrapes never recovered");
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(silent);
}

#[test]
fn stats_interval_prints_json_lines() {
    let p = Proc::start(&[
        "serve",
        "--ephemeral",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--stats-interval",
        "200ms",
    ]);
    let first = p.wait_for("event", "stats");
    assert_eq!(first["sessions"], 0);
    assert!(first["drops"]["decrypt"].is_u64(), "{first}");
    let second = p.wait_for("event", "stats");
    assert!(second["rates_per_s"]["rx_packets"].is_f64(), "{second}");
    assert!(second["uptime_s"].as_f64() > first["uptime_s"].as_f64());
}

#[test]
fn dashboard_is_refused_off_a_terminal() {
    for args in [
        &[
            "serve",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
            "--dashboard",
        ][..],
        &["connect", "rtmfp://127.0.0.1:9/x", "--dashboard"][..],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--dashboard needs a terminal"), "{err}");
    }
    // And it cannot be combined with output meant for scripts.
    let out = Command::new(BIN)
        .args(["serve", "--ephemeral", "--dashboard", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// tmux runs `serve --dashboard`; a real `connect --count` joins; the pane
/// shows its peer ID and a live RTT; `q` quits and the terminal is back to
/// normal (main screen, canonical mode).
#[test]
fn dashboard_in_tmux_shows_a_real_peer() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("RTMFP_NO_TMUX").is_some(),
            "tmux is needed (apt-get install tmux)"
        );
        return;
    }
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let name = format!("rtmfp-dash-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &name])
            .args(args)
            .output()
            .expect("tmux")
    };
    struct Kill<F: Fn()>(F);
    impl<F: Fn()> Drop for Kill<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _kill = Kill(|| {
        let _ = tmux(&["kill-server"]);
    });
    let cmd = format!(
        "{BIN} serve --ephemeral --handshake-rate 0 --listen 127.0.0.1:{port} --dashboard; \
         echo EXITED $?; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 60"
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-e",
        "RUST_LOG=info",
        &cmd,
    ]);
    assert!(out.status.success(), "{out:?}");
    let capture = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
    let wait = |what: &str, ok: &dyn Fn(&str) -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = capture();
            if ok(&screen) {
                return screen;
            }
            assert!(Instant::now() < end, "{what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("dashboard up", &|s| {
        s.contains("q quit") && s.contains("no sessions yet")
    });

    let url = format!("rtmfp://127.0.0.1:{port}/live");
    let client = Proc::start(&[
        "connect",
        &url,
        "--json",
        "--count",
        "40",
        "--interval",
        "250ms",
    ]);
    let report = client.wait_for("type", "connect");
    let peer = report["peer_id"].as_str().unwrap()[..8].to_owned();
    // Columns at 100 wide: PEER ADDRESS KIND APP STATE AGE RTT ...; the
    // RTT is "-" until the first measurement, the app until `connect`.
    let screen = wait("the peer's row with its app and an RTT", &|s| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 6
                && c[0] == peer
                && c[3] == "live"
                && c[4] == "open"
                && c[6] != "-"
                && c[6].ends_with('s')
        })
    });
    let row = screen.lines().find(|l| l.starts_with(&peer)).unwrap();
    assert!(row.contains("127.0.0.1:"), "{row}");
    assert!(row.contains("client") && row.contains("live"), "{row}");

    tmux(&["send-keys", "q"]);
    let after = wait("the dashboard to exit and stty to report", &|s| {
        s.contains("EXITED") && s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    assert!(after.contains("EXITED 0"), "{after}");
    // Canonical mode again, and the dashboard's screen is gone.
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "terminal left in raw mode:\n{after}"
    );
    assert!(!after.contains("q quit"), "{after}");
    let alt = tmux(&["display-message", "-p", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0");
    // Logs written while it ran were not lost: the stop line reached stderr.
    assert!(after.contains("stopped:"), "{after}");
    drop(client);
}

/// The dashboard's quit key stops `connect` like SIGINT: before the server
/// answered, the run is interrupted (exit 130, and it says so); the
/// README's test covers a quit after connecting (exit 0, summary printed).
#[test]
fn dashboard_quit_before_connecting_is_an_interrupt() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("RTMFP_NO_TMUX").is_some(),
            "tmux is needed (apt-get install tmux)"
        );
        return;
    }
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let name = format!("rtmfp-quit-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &name])
            .args(args)
            .output()
            .expect("tmux")
    };
    let cmd = format!(
        "{BIN} connect rtmfp://{addr}/live --count 60 --timeout 60s --dashboard; \
         echo EXITED $?; sleep 60"
    );
    assert!(
        tmux(&["new-session", "-d", "-x", "100", "-y", "30", &cmd])
            .status
            .success()
    );
    let capture = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
    let wait = |ok: &dyn Fn(&str) -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let s = capture();
            if ok(&s) || Instant::now() > end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let up = wait(&|s| s.contains("q quit"));
    assert!(up.contains("q quit"), "{up}");
    tmux(&["send-keys", "q"]);
    let screen = wait(&|s| s.contains("EXITED"));
    let _ = tmux(&["kill-server"]);
    assert!(screen.contains("EXITED 130"), "{screen}");
    assert!(screen.contains("interrupted"), "{screen}");
}
