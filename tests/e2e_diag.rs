//! What a user sees when something goes wrong (issue 6): the real binary on
//! loopback against our serve at its limits, a closed port, a UDP socket
//! that answers garbage, a Flash-era server, and signals at every phase.
//! Every run is bounded in time.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rtmfp::flash::message::encode_command;
use rtmfp::flash::{Body, Command as TcCommand, Message, NetCommand, StatusInfo, TcMetadata};
use rtmfp::net::{App, Clock, Driver, OsRng, bind};
use rtmfp::proto::crypto::Identity;
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event};
use rtmfp::proto::flow::{FlowEvent, Priority, WriteOptions};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtmfp")
}

/// Spawns `rtmfp args` and returns once a line containing `pattern`
/// appears on stderr (`on_stderr`) or stdout; the lines read so far are
/// kept and handed back by [`finish_watched`].
struct Watched {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

fn spawn_until(args: &[&str], on_stderr: bool, pattern: &str) -> Watched {
    let mut child = spawn(args);
    let pipe = |r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let w = Watched { child, out, err };
    let watch = if on_stderr { &w.err } else { &w.out };
    let mut seen = Vec::new();
    loop {
        match watch.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains(pattern) => {
                seen.push(l);
                break;
            }
            Ok(l) => seen.push(l),
            Err(_) => panic!("{pattern:?} not seen within 30 s: {seen:?}"),
        }
    }
    // Put back what was read, for the caller's checks.
    let (tx, rx) = mpsc::channel();
    for l in seen {
        let _ = tx.send(l);
    }
    if on_stderr {
        Watched {
            err: chain(rx, w.err),
            ..w
        }
    } else {
        Watched {
            out: chain(rx, w.out),
            ..w
        }
    }
}

/// `first`'s lines, then `then`'s.
fn chain(first: mpsc::Receiver<String>, then: mpsc::Receiver<String>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in first.try_iter().chain(then.iter()) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a watched child (at most `limit`): (exit code, stdout, stderr, time taken).
fn finish_watched(mut w: Watched, limit: Duration) -> (Option<i32>, Vec<String>, String, Duration) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = w.child.kill();
            let _ = w.child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let out: Vec<String> = w.out.iter().collect();
    let err: Vec<String> = w.err.iter().collect();
    (status.code(), out, err.join("\n"), took)
}

/// Waits for `child` (killing it after `limit`) and collects its output.
fn finish(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&err_t.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    (
        Output {
            status,
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        },
        elapsed,
    )
}

fn run(args: &[&str], limit: Duration) -> (Output, Duration) {
    finish(spawn(args), limit)
}

fn json_lines(out: &Output) -> Vec<Json> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn error_of(out: &Output) -> Json {
    json_lines(out)
        .into_iter()
        .find(|v| v["type"] == "error")
        .unwrap_or_else(|| panic!("no error line; stderr: {}", stderr(out)))
}

/// `rtmfp serve --json` on a free loopback port; its events are collected.
struct Serve {
    child: Child,
    addr: SocketAddr,
    events: mpsc::Receiver<Json>,
    seen: Vec<Json>,
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let mut args = vec!["serve", "--ephemeral", "--json", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut child = Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Json = serde_json::from_str(&line).expect("serve --json writes JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut s = Serve {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            events,
            seen: Vec::new(),
        };
        let l = s.wait_for(|v| v["event"] == "listening", Duration::from_secs(20));
        s.addr = l["addr"].as_str().unwrap().parse().unwrap();
        s
    }

    fn url(&self, app: &str) -> String {
        format!("rtmfp://{}/{app}", self.addr)
    }

    fn wait_for(&mut self, f: impl Fn(&Json) -> bool, limit: Duration) -> Json {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("event not seen; so far: {:?}", self.seen));
            self.seen.push(v.clone());
            if f(&v) {
                return v;
            }
        }
    }

    /// Everything seen within `d`.
    fn drain(&mut self, d: Duration) -> Vec<Json> {
        let end = Instant::now() + d;
        while let Ok(v) = self
            .events
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
        self.seen.clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- serve

#[test]
fn a_normal_disconnect_is_a_close_not_an_error() {
    let mut srv = Serve::start(&[]);
    let (out, _) = run(
        &["connect", &srv.url("live"), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    srv.wait_for(|v| v["event"] == "session_closed", Duration::from_secs(10));
    let seen = srv.drain(Duration::from_millis(300));
    assert!(
        !seen.iter().any(|v| v["event"] == "error"),
        "no error events: {seen:?}"
    );
    // The client ends its NetConnection and its session together: the
    // server reports a close (with how the client ended it, when it saw
    // that first), never an error.
    let closed = seen
        .iter()
        .find(|v| v["event"] == "session_closed")
        .unwrap();
    assert_eq!(closed["reason"], "remote", "{seen:?}");
    for c in seen.iter().filter(|v| v["event"] == "client_closed") {
        assert!(
            c["reason"].as_str().unwrap().starts_with("control_flow_"),
            "{c}"
        );
    }
    // Every event carries an RFC 3339 UTC timestamp.
    for v in &seen {
        let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {v}"));
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
}

#[test]
fn connect_learns_its_public_address_and_announces_amf3() {
    let mut srv = Serve::start(&[]);
    let (out, _) = run(
        &["connect", &srv.url("live"), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &json_lines(&out)[0];
    let observed: SocketAddr = r["observed_address"]
        .as_str()
        .expect("observed address reported")
        .parse()
        .unwrap();
    assert_eq!(observed.ip().to_string(), "127.0.0.1");
    let locals: Vec<String> = r["local_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(
        locals.contains(&observed.to_string()),
        "{locals:?} vs {observed}"
    );
    assert_eq!(r["server_info"]["publicAddress"], observed.to_string());
    assert_eq!(r["dh_reason"], "negotiated");
    let c = srv.wait_for(|v| v["event"] == "connect", Duration::from_secs(5));
    assert_eq!(c["object_encoding"], 3.0);

    let (out, _) = run(&["connect", &srv.url("live")], Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "observed address:   {observed_ip}",
            observed_ip = "127.0.0.1"
        )),
        "{text}"
    );
    assert!(!text.contains("smoothed"), "one RTT figure: {text}");
}

#[test]
fn serve_refusing_keyings_is_diagnosed_as_such() {
    // A keying budget smaller than one group-16 computation: the server
    // answers IHellos but drops every IIKeying before any work.
    let srv = Serve::start(&["--keying-budget", "1"]);
    let (out, _) = run(
        &["connect", &srv.url("live"), "--json", "--timeout", "2s"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let e = error_of(&out);
    assert_eq!(e["phase"], "keying", "{e}");
    assert_eq!(e["kind"], "no_keying", "{e}");
    let possible = e["possible"].to_string();
    assert!(
        possible.contains("session limit") && possible.contains("throttle"),
        "{e}"
    );
    assert!(
        !e["message"]
            .as_str()
            .unwrap()
            .contains("DH group or crypto mismatch?")
    );
}

#[test]
fn a_server_at_its_session_limit_says_it_is_full() {
    let srv = Serve::start(&["--max-sessions", "0"]);
    let (out, _) = run(
        &["connect", &srv.url("live"), "--json", "--timeout", "5s"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let e = error_of(&out);
    assert_eq!(e["phase"], "connect", "{e}");
    assert_eq!(e["kind"], "server_full", "{e}");
}

#[test]
fn load_run_reports_throttling_with_evidence() {
    let srv = Serve::start(&["--handshake-rate", "1"]);
    let (out, _) = run(
        &[
            "connect",
            &srv.url("live"),
            "--sessions",
            "6",
            "--concurrency",
            "6",
            "--timeout",
            "3s",
            "--json",
        ],
        Duration::from_secs(60),
    );
    let l = &json_lines(&out)[0];
    assert_eq!(l["type"], "load");
    assert!(l["keying_resends"].as_u64().unwrap() > 0, "{l}");
    let t = l["throttled"].as_str().expect("throttling reported");
    assert!(t.contains("--handshake-rate 0"), "{t}");
}

#[test]
fn hold_notices_the_server_shutting_down() {
    let srv = Serve::start(&[]);
    let url = srv.url("live");
    let w = spawn_until(
        &["connect", &url, "--sessions", "2", "--hold"],
        true,
        "holding 2 sessions",
    );
    signal(&srv.child, "TERM");
    let (code, _, err, _) = finish_watched(w, Duration::from_secs(20));
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("closed all 2 held sessions"), "{err}");
}

#[test]
fn identity_in_a_missing_directory_is_not_created() {
    let dir = std::env::temp_dir().join(format!("rtmfp-diag-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = dir.join("no").join("key");
    let (out, _) = run(
        &[
            "serve",
            "--identity",
            key.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!dir.exists(), "no directories created");
}

#[test]
fn listen_accepts_a_host_name() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--ephemeral",
            "--json",
            "--listen",
            &format!("localhost:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "serve exited");
        if line.contains("\"listening\"") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains(&format!(":{port}")), "{line}");
    let (out, _) = run(&["serve", "--listen", "localhost"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no port"), "{}", stderr(&out));
}

// ---------------------------------------------------------------- connect

#[test]
fn a_closed_port_is_reported_at_once() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rtmfp://127.0.0.1:{port}/live");
    let (out, took) = run(
        &["connect", &url, "--json", "--timeout", "30s"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        took < Duration::from_secs(15),
        "answered at once, not after the timeout: {took:?}"
    );
    let e = error_of(&out);
    assert_eq!(
        (e["phase"].as_str(), e["kind"].as_str()),
        (Some("hello"), Some("unreachable"))
    );
}

/// A UDP service that is not RTMFP: every datagram gets an HTTP error
/// back. Stops when dropped.
struct NotRtmfp {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotRtmfp {
    fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(b"HTTP/1.0 400 Bad Request\r\n\r\n", from);
                }
            }
        });
        NotRtmfp {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NotRtmfp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_non_rtmfp_answer_is_told_apart_from_silence() {
    let http = NotRtmfp::start();
    let addr = http.addr;
    let url = format!("rtmfp://{addr}/live");
    let (out, _) = run(
        &["connect", &url, "--json", "--timeout", "2s"],
        Duration::from_secs(30),
    );
    drop(http);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let e = error_of(&out);
    assert_eq!(
        (e["phase"].as_str(), e["kind"].as_str()),
        (Some("hello"), Some("not_rtmfp")),
        "{e}"
    );
}

#[test]
fn oversized_and_hostile_urls_are_refused_before_sending() {
    let long = format!("rtmfp://127.0.0.1/{}", "a".repeat(70_000));
    let (out, took) = run(&["connect", &long], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(took < Duration::from_secs(3));
    let err = stderr(&out);
    assert!(
        err.len() < 400,
        "short message, not the URL echoed: {} bytes",
        err.len()
    );
    assert!(err.contains("first handshake packet"), "{err}");

    let (out, _) = run(
        &["connect", "rtmfp://h/a\u{1b}[2Jb"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stderr(&out).contains('\u{1b}'),
        "control characters escaped"
    );

    let (out, _) = run(
        &["connect", "rtmfp://127.0.0.1/a", "--timeout", "0"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("more than 0"), "{}", stderr(&out));
}

#[test]
fn ping_matches_replies_exactly() {
    let srv = Serve::start(&[]);
    let (out, _) = run(
        &[
            "connect",
            &srv.url("live"),
            "--json",
            "--count",
            "50",
            "--interval",
            "10ms",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let pings: Vec<&Json> = lines.iter().filter(|v| v["type"] == "ping").collect();
    let mut seqs: Vec<u64> = pings.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=50).collect::<Vec<_>>(),
        "each probe reported once"
    );
    let s = lines.last().unwrap();
    assert_eq!(s["type"], "ping_summary");
    assert_eq!(
        (s["sent"].as_u64(), s["lost"].as_u64()),
        (Some(50), Some(0)),
        "{s}"
    );
    let (out, _) = run(
        &[
            "connect",
            &srv.url("live"),
            "--count",
            "2",
            "--interval",
            "1ms",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "a minimum interval");
}

// ---------------------------------------------------------------- signals

#[test]
fn sigint_while_waiting_for_an_answer_says_so() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", silent.local_addr().unwrap());
    let w = spawn_until(
        &["-vv", "connect", &url, "--timeout", "30s"],
        true,
        "sending IHello",
    );
    signal(&w.child, "INT");
    let (code, _, err, took) = finish_watched(w, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5));
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
}

#[test]
fn sigterm_during_count_prints_the_summary() {
    let srv = Serve::start(&[]);
    let url = srv.url("live");
    let args = ["connect", &url, "--count", "100", "--interval", "100ms"];
    let w = spawn_until(&args, false, "seq=1 ");
    signal(&w.child, "TERM");
    let (code, out, err, _) = finish_watched(w, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.iter().any(|l| l.contains("probes,")),
        "summary printed: {out:?}"
    );
}

#[test]
fn sigint_in_a_load_run_cancels_rather_than_fails() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", silent.local_addr().unwrap());
    let args = [
        "-v",
        "connect",
        &url,
        "--sessions",
        "10",
        "--concurrency",
        "4",
        "--timeout",
        "30s",
        "--json",
    ];
    let w = spawn_until(&args, true, "opening session");
    // All four slots start at once; give the others a moment.
    std::thread::sleep(Duration::from_millis(300));
    signal(&w.child, "INT");
    let (code, out, err, _) = finish_watched(w, Duration::from_secs(10));
    assert_eq!(code, Some(130), "{err}");
    let l: Json = serde_json::from_str(&out[0]).unwrap();
    assert_eq!(l["failed"], 0, "{l}");
    assert_eq!(l["cancelled"], 4, "{l}");
    assert_eq!(l["not_started"], 6, "{l}");
}

// ---------------------------------------------------------- flash-era server

/// A server whose certificate has the Cirrus/Cumulus/MonaServer layout and
/// that answers `connect`.
struct FlashEra;

impl App for FlashEra {
    type Command = ();

    fn on_event(&mut self, ep: &mut Endpoint, _now: rtmfp::proto::Instant, event: Event) {
        let Event::Flow { session, event } = event else {
            return;
        };
        let t = ep.transport(session).unwrap();
        match event {
            FlowEvent::NewFlow { flow, .. } => {
                let ours = t
                    .open_flow(
                        &TcMetadata::new(0).to_bytes(),
                        Some(flow),
                        Priority::Immediate,
                    )
                    .unwrap();
                assert_eq!(ours, 1);
            }
            FlowEvent::Message { data, .. } => {
                if let Ok(Message {
                    body: Body::Command { command, .. },
                    ..
                }) = Message::parse(&data)
                    && let Ok(NetCommand::Connect(c)) = NetCommand::parse(&command)
                {
                    let r = TcCommand::result(
                        c.transaction_id,
                        [StatusInfo::connect_success("hi", 3.0).to_value()],
                    );
                    t.write(1, &encode_command(&r).unwrap(), WriteOptions::default())
                        .unwrap();
                }
            }
            _ => {}
        }
        ep.wake(session);
    }
}

#[test]
fn a_flash_era_server_is_keyed_as_flash_player_without_flags() {
    let mut cert = vec![0x01, 0x0a, 0x41, 0x0e];
    cert.extend([0x42; 64]);
    cert.extend([0x02, 0x15, 0x02, 0x02, 0x15, 0x05, 0x02, 0x15, 0x0e]);
    let identity = Identity::ephemeral_from_certificate(cert).unwrap();
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sock = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            tx.send(sock.local_addr().unwrap()).unwrap();
            let clock = Clock::new();
            let mut ep = Endpoint::new(
                identity,
                EndpointConfig::default(),
                Box::new(OsRng),
                clock.now(),
            );
            ep.add_interface(false);
            let mut d = Driver::new(ep, FlashEra, vec![sock], clock);
            let _ = d
                .run(
                    async {
                        let _ = stop_rx.await;
                    },
                    Duration::from_millis(200),
                )
                .await;
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let (out, _) = run(
        &[
            "connect",
            &format!("rtmfp://{addr}/live"),
            "--json",
            "--timeout",
            "5s",
        ],
        Duration::from_secs(30),
    );
    let _ = stop_tx.send(());
    thread.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &json_lines(&out)[0];
    assert_eq!(r["dh_group"], 2, "{r}");
    assert_eq!(r["dh_reason"], "flash_era_server", "{r}");
}

#[test]
fn verbose_client_logs_its_handshake() {
    let srv = Serve::start(&[]);
    let (out, _) = run(
        &["-vv", "connect", &srv.url("live")],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for step in [
        "sending IHello",
        "RHello received",
        "session open",
        "connect answered",
        "session closed",
    ] {
        assert!(
            err.contains(step),
            "{step:?} missing from -vv output:\n{err}"
        );
    }
    let (out, _) = run(&["connect", &srv.url("live")], Duration::from_secs(30));
    assert!(!stderr(&out).contains("RHello"), "quiet without -v");
}

#[test]
fn serve_says_what_it_dropped_and_why() {
    let mut srv = Serve::start(&[]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        sock.send_to(b"x", srv.addr).unwrap();
        sock.send_to(&[0u8; 64], srv.addr).unwrap();
    }
    // Summed up at most every 10 s, so a flood cannot flood the log.
    let d = srv.wait_for(|v| v["event"] == "dropped", Duration::from_secs(15));
    assert_eq!(d["datagrams"], 10, "{d}");
    let by = d["by_reason"].as_object().unwrap();
    assert_eq!(
        by.values().filter_map(|n| n.as_u64()).sum::<u64>(),
        10,
        "{d}"
    );
    assert!(by.contains_key("too_short"), "{d}");
}

// ------------------------------------------------- every command, one setup

/// `connect`, `subscribe` and `publish` to the same address with `--json`:
/// each one's error line and exit code.
fn setup_errors(addr: SocketAddr, timeout: &str) -> Vec<(String, Json, Option<i32>)> {
    let input = std::env::temp_dir().join(format!(
        "rtmfp-diag-{}-{}.flv",
        std::process::id(),
        addr.port()
    ));
    // An FLV header and no tags: a publish with nothing to send.
    std::fs::write(&input, b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00").unwrap();
    let server = format!("rtmfp://{addr}/live");
    let stream = format!("{server}/cam");
    let runs: [(&str, Vec<&str>); 5] = [
        ("connect", vec!["connect", &server]),
        ("subscribe", vec!["subscribe", &stream, "-o", "/dev/null"]),
        ("publish", vec!["publish", &stream, input.to_str().unwrap()]),
        // The peer commands open the same server session first.
        ("connect --peer", vec!["connect", "--peer", "bob", &server]),
        (
            "subscribe --peer",
            vec!["subscribe", "--peer", "bob", &stream, "-o", "/dev/null"],
        ),
    ];
    let out = runs
        .into_iter()
        .map(|(name, mut args)| {
            args.extend(["--json", "--timeout", timeout]);
            let (out, _) = run(&args, Duration::from_secs(60));
            (name.to_owned(), error_of(&out), out.status.code())
        })
        .collect();
    let _ = std::fs::remove_file(&input);
    out
}

/// Every command that opens a server session gives `connect`'s diagnosis:
/// the same phase, kind, words and exit code.
fn assert_same_diagnosis(runs: &[(String, Json, Option<i32>)], phase: &str, kind: &str) {
    let (_, first, code) = &runs[0];
    assert_eq!(
        (first["phase"].as_str(), first["kind"].as_str()),
        (Some(phase), Some(kind)),
        "{first}"
    );
    for (name, e, c) in &runs[1..] {
        assert_eq!(
            (&e["phase"], &e["kind"], &e["message"], c),
            (&first["phase"], &first["kind"], &first["message"], code),
            "{name} against connect: {e} vs {first}"
        );
    }
}

#[test]
fn publish_and_subscribe_diagnose_a_dead_server_as_connect_does() {
    // Bound but never read: nothing answers.
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let runs = setup_errors(quiet.local_addr().unwrap(), "1s");
    assert_same_diagnosis(&runs, "hello", "no_answer");
    // Nothing bound: the kernel says port unreachable.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let runs = setup_errors(closed, "30s");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "each answered at once, not after the timeout"
    );
    assert_same_diagnosis(&runs, "hello", "unreachable");
}

#[test]
fn publish_and_subscribe_tell_a_non_rtmfp_answer_from_silence_as_connect_does() {
    let http = NotRtmfp::start();
    let addr = http.addr;
    let runs = setup_errors(addr, "1s");
    drop(http);
    // The words carry how many datagrams came back, which differs per run.
    for (name, e, c) in &runs {
        assert_eq!(
            (e["phase"].as_str(), e["kind"].as_str(), *c),
            (Some("hello"), Some("not_rtmfp"), Some(6)),
            "{name}: {e}"
        );
    }
}
