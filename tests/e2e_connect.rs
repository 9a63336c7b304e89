//! `rtmfp connect` as a user runs it: the real binary against loopback
//! targets (nothing listening, an in-test TC server built from the library).
//! Every run is bounded in time.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant as StdInstant};

use rtmfp::flash::message::encode_command;
use rtmfp::flash::{
    Body, Command as TcCommand, Message, NetCommand, StatusInfo, TcMetadata, UserControl, Value,
};
use rtmfp::net::{App, Clock, Driver, OsRng, bind};
use rtmfp::proto::Instant;
use rtmfp::proto::crypto::{DhGroup, Identity, peer_id_hex};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event};
use rtmfp::proto::flow::{FlowEvent, Priority, WriteOptions};
use serde_json::Value as Json;

#[path = "support/json_proc.rs"]
mod json_proc;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

/// Runs the binary, killing it if it outlives `limit`.
fn run(args: &[&str], limit: Duration) -> (Output, Duration) {
    let start = StdInstant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtmfp");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rtmfp {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (
        Output {
            status,
            stdout,
            stderr,
        },
        elapsed,
    )
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

// ------------------------------------------------------------ test server

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Reject,
    /// Opens sessions and flows but never answers `connect`.
    Silent,
}

/// A minimal TC responder: takes the client's control flow, opens its own
/// in return, answers `connect` (tid echoed) and sends Set Keepalive.
struct TcResponder {
    mode: Mode,
    /// (session, client control flow) -> our control flow.
    flows: Vec<(rtmfp::proto::endpoint::SessionHandle, u64, u64)>,
    peer_infos: mpsc::Sender<Vec<String>>,
}

impl App for TcResponder {
    type Command = ();

    fn on_event(&mut self, ep: &mut Endpoint, _now: Instant, event: Event) {
        let Event::Flow { session, event } = event else {
            return;
        };
        match event {
            FlowEvent::NewFlow { flow, metadata, .. } => {
                let ok = TcMetadata::parse(&metadata).is_ok_and(|m| m.is_control());
                let t = ep.transport(session).unwrap();
                if !ok {
                    t.reject_flow(flow, 0);
                } else {
                    let ours = t
                        .open_flow(
                            &TcMetadata::new(0).to_bytes(),
                            Some(flow),
                            Priority::Immediate,
                        )
                        .unwrap();
                    self.flows.push((session, flow, ours));
                }
                ep.wake(session);
            }
            FlowEvent::Message { flow, data } => {
                let Some(&(_, _, ours)) = self
                    .flows
                    .iter()
                    .find(|(s, f, _)| *s == session && *f == flow)
                else {
                    return;
                };
                let Ok(msg) = Message::parse(&data) else {
                    return;
                };
                let Body::Command { command, .. } = msg.body else {
                    return;
                };
                let far = ep.session(session).unwrap().far_addr;
                let reply = match NetCommand::parse(&command) {
                    Ok(NetCommand::Connect(c)) => match self.mode {
                        Mode::Accept => Some(TcCommand::result(
                            c.transaction_id,
                            [StatusInfo::connect_success("welcome", 0.0)
                                .with("publicAddress", Value::str(far.to_string()))
                                .to_value()],
                        )),
                        Mode::Reject => Some(TcCommand::error(
                            c.transaction_id,
                            &StatusInfo::connect_rejected("go away"),
                        )),
                        Mode::Silent => None,
                    },
                    Ok(p @ NetCommand::SetPeerInfo { .. }) => {
                        if let NetCommand::SetPeerInfo { addresses, .. } = p {
                            let _ = self.peer_infos.send(addresses);
                        }
                        let ka = UserControl::SetKeepalive {
                            server_ms: 15_000,
                            peer_ms: 10_000,
                        };
                        let t = ep.transport(session).unwrap();
                        t.write(ours, &ka.to_message(), WriteOptions::default())
                            .unwrap();
                        None
                    }
                    _ => None,
                };
                if let Some(r) = reply {
                    let t = ep.transport(session).unwrap();
                    t.write(ours, &encode_command(&r).unwrap(), WriteOptions::default())
                        .unwrap();
                }
                ep.wake(session);
            }
            _ => {}
        }
    }
}

struct TestServer {
    addr: SocketAddr,
    fingerprint: [u8; 32],
    peer_infos: mpsc::Receiver<Vec<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(mode: Mode) -> Self {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (pi_tx, peer_infos) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let identity =
            Identity::generate_ephemeral_server(&[DhGroup::G14, DhGroup::G2], &mut OsRng).unwrap();
        let fingerprint = identity.fingerprint();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sock = bind("127.0.0.1:0".parse().unwrap()).unwrap();
                addr_tx.send(sock.local_addr().unwrap()).unwrap();
                let clock = Clock::new();
                let mut ep = Endpoint::new(
                    identity,
                    EndpointConfig::default(),
                    Box::new(OsRng),
                    clock.now(),
                );
                ep.add_interface(false);
                let app = TcResponder {
                    mode,
                    flows: Vec::new(),
                    peer_infos: pi_tx,
                };
                let mut d = Driver::new(ep, app, vec![sock], clock);
                let stopped = async {
                    let _ = stop_rx.await;
                };
                let _ = d.run(stopped, Duration::from_millis(200)).await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            addr,
            fingerprint,
            peer_infos,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, app: &str) -> String {
        format!("rtmfp://{}/{app}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn nothing_listening_exits_4_within_the_timeout() {
    // Bound but never read: nothing answers, and no other test can take the port.
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", quiet.local_addr().unwrap());
    let (out, elapsed) = run(
        &["connect", &url, "--timeout", "1s"],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(4), "stderr: {}", stderr(&out));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(
        stderr(&out).contains("no answer"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn no_answer_is_a_json_error_line_with_json() {
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", quiet.local_addr().unwrap());
    let (out, _) = run(
        &["connect", &url, "--timeout", "500ms", "--json"],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(4));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "error");
    assert_eq!(lines[0]["kind"], "no_answer");
}

#[test]
fn unresolvable_host_exits_3() {
    let (out, _) = run(
        &[
            "connect",
            "rtmfp://nonexistent.invalid/app",
            "--timeout",
            "3s",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("nonexistent.invalid"));
}

#[test]
fn bad_urls_exit_2_with_a_clear_message() {
    for (url, says) in [
        ("http://127.0.0.1/app", "rtmfp://"),
        ("rtmfp://127.0.0.1:99999/app", "bad port"),
        ("rtmfp://::1/app", "IPv6"),
        ("rtmfp:///app", "no host"),
    ] {
        let (out, _) = run(&["connect", url], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("bad URL") && e.contains(says), "{url}: {e}");
    }
}

#[test]
fn connects_and_reports_as_json() {
    let server = TestServer::start(Mode::Accept);
    let (out, _) = run(
        &["connect", &server.url("live"), "--json", "--timeout", "10s"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r = &lines[0];
    assert_eq!(r["type"], "connect");
    assert_eq!(r["url"], server.url("live"));
    assert_eq!(r["far_address"], server.addr.to_string());
    assert_eq!(r["server_fingerprint"], peer_id_hex(&server.fingerprint));
    assert_eq!(r["peer_id"].as_str().unwrap().len(), 64);
    // `auto` offers every group; the server's strongest common one is 14.
    assert_eq!(r["dh_group"], 14);
    assert_eq!(r["server_info"]["code"], "NetConnection.Connect.Success");
    assert_eq!(r["server_info"]["description"], "welcome");
    // The server saw us at our one local address, and said so.
    let local = r["local_addresses"][0].as_str().unwrap().to_owned();
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    assert_eq!(r["observed_address"], local.as_str());
    assert!(r["handshake_ms"].as_f64().unwrap() > 0.0);
    assert!(r["connect_ms"].as_f64().unwrap() >= 0.0);
    assert!(r["hmac"]["send"].is_boolean() && r["sseq"]["recv"].is_boolean());
    // setPeerInfo carried the same address.
    let infos = server
        .peer_infos
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(infos, vec![local]);
    // The Set Keepalive sent in answer to setPeerInfo arrives before the ping reply.
    assert_eq!(r["keepalive"]["server_ms"], 15000);
    assert_eq!(r["keepalive"]["peer_ms"], 10000);
}

#[test]
fn dh_group_2_is_negotiated_when_asked() {
    let server = TestServer::start(Mode::Accept);
    let (out, _) = run(
        &["connect", &server.url("live"), "--json", "--dh-group", "2"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["dh_group"], 2);
}

#[test]
fn count_reports_samples_and_a_summary() {
    let server = TestServer::start(Mode::Accept);
    let (out, _) = run(
        &[
            "connect",
            &server.url("live"),
            "--json",
            "--count",
            "3",
            "--interval",
            "100ms",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["connect", "ping", "ping", "ping", "ping_summary"]);
    for (i, l) in lines[1..4].iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
        assert_eq!(l["lost"], false);
    }
    let s = &lines[4];
    assert_eq!(
        (s["sent"].as_u64(), s["received"].as_u64()),
        (Some(3), Some(3))
    );
    let (min, avg, max) = (
        s["min_ms"].as_f64().unwrap(),
        s["avg_ms"].as_f64().unwrap(),
        s["max_ms"].as_f64().unwrap(),
    );
    assert!(min <= avg && avg <= max, "{s}");
}

#[test]
fn rejection_exits_5_and_prints_the_status() {
    let server = TestServer::start(Mode::Reject);
    let (out, _) = run(&["connect", &server.url("live")], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("NetConnection.Connect.Rejected") && e.contains("go away"),
        "{e}"
    );

    let (out, _) = run(
        &["connect", &server.url("live"), "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(5));
    let l = &json_lines(&out)[0];
    assert_eq!(l["kind"], "rejected");
    assert_eq!(l["code"], "NetConnection.Connect.Rejected");
    assert_eq!(l["description"], "go away");
}

#[test]
fn unanswered_connect_exits_6_within_the_timeout() {
    let server = TestServer::start(Mode::Silent);
    let (out, elapsed) = run(
        &["connect", &server.url("live"), "--timeout", "1s"],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(6), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("connect got no reply"),
        "{}",
        stderr(&out)
    );
    assert!(
        elapsed < Duration::from_secs(3) + Duration::from_millis(1500),
        "{elapsed:?}"
    );
}

#[test]
fn load_run_reports_percentiles() {
    let server = TestServer::start(Mode::Accept);
    let (out, _) = run(
        &[
            "connect",
            &server.url("live"),
            "--json",
            "--sessions",
            "8",
            "--concurrency",
            "3",
            "--dh-group",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["type"], "load");
    assert_eq!(
        (l["sessions"].as_u64(), l["concurrency"].as_u64()),
        (Some(8), Some(3))
    );
    assert_eq!(
        (l["succeeded"].as_u64(), l["failed"].as_u64()),
        (Some(8), Some(0))
    );
    for k in ["p50", "p90", "p99", "max"] {
        assert!(l["handshake_ms"][k].as_f64().unwrap() > 0.0);
        assert!(l["connect_ms"][k].is_number());
    }
    assert!(l["sessions_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn load_run_against_nothing_counts_no_answers() {
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", quiet.local_addr().unwrap());
    let (out, elapsed) = run(
        &[
            "connect",
            &url,
            "--json",
            "--sessions",
            "2",
            "--concurrency",
            "2",
            "--timeout",
            "500ms",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(4), "stderr: {}", stderr(&out));
    let l = &json_lines(&out)[0];
    assert_eq!(l["failures"]["no_answer"], 2);
    assert!(l["handshake_ms"].is_null());
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn no_common_dh_group_exits_6_not_4() {
    // The test server offers 14 and 2 only.
    let server = TestServer::start(Mode::Accept);
    let (out, _) = run(
        &[
            "connect",
            &server.url("live"),
            "--dh-group",
            "16",
            "--timeout",
            "1s",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(6), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("DH group"), "{}", stderr(&out));
}

#[test]
fn interrupt_during_count_prints_the_summary_and_exits_0() {
    use std::io::BufRead;
    let server = TestServer::start(Mode::Accept);
    let mut child = Command::new(BIN)
        .args([
            "connect",
            &server.url("live"),
            "--json",
            "--count",
            "1000",
            "--interval",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once pinging (a loaded machine may take seconds to connect;
    // an interrupt before that is another case, see e2e_diag).
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<Json> = Vec::new();
    while !lines.iter().any(|l| l["type"] == "ping") {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("pings within 30 s");
        lines.push(serde_json::from_str(&l).unwrap());
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = StdInstant::now();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let out = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("exits soon after SIGINT")
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(serde_json::from_str(&l).unwrap());
    }
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "ping_summary", "{lines:?}");
    assert!(last["received"].as_u64().unwrap() >= 1);
    assert!(lines.iter().all(|l| l["type"] != "error"), "{lines:?}");
}

#[test]
fn hold_keeps_sessions_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let server = TestServer::start(Mode::Accept);
    let mut child = Command::new(BIN)
        .args([
            "connect",
            &server.url("live"),
            "--json",
            "--sessions",
            "4",
            "--concurrency",
            "2",
            "--hold",
            "--dh-group",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("no summary within 20 s");
        }
    };
    let l: Json = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (l["succeeded"].as_u64(), l["failed"].as_u64()),
        (Some(4), Some(0)),
        "{l}"
    );
    // Still holding after the summary.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "exited while holding");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let start = StdInstant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// `rtmfp serve` on a free loopback port, killed (SIGINT) on drop.
#[test]
fn connects_to_our_own_serve() {
    // On a port serve bound itself (port 0) and reported: a port picked
    // here and released could be taken by another test before serve binds.
    let (_serve, addr) = json_proc::serve();
    let url = format!("rtmfp://{addr}/live");
    // IHellos are repeated, so a server still starting up is fine.
    let (out, _) = run(
        &[
            "connect",
            &url,
            "--json",
            "--dh-group",
            "2",
            "--timeout",
            "5s",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let r = &json_lines(&out)[0];
    assert_eq!(r["dh_group"], 2);
    assert_eq!(r["server_info"]["code"], "NetConnection.Connect.Success");
    assert_eq!(r["server_info"]["connectionID"], r["peer_id"]);
    assert_eq!(
        r["server_info"]["serverFingerprint"],
        r["server_fingerprint"]
    );
    assert!(r["keepalive"]["server_ms"].as_u64().unwrap() >= 5000, "{r}");

    let (out, _) = run(
        &[
            "connect",
            &url,
            "--json",
            "--sessions",
            "12",
            "--concurrency",
            "4",
            "--dh-group",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let l = &json_lines(&out)[0];
    assert_eq!(
        (l["succeeded"].as_u64(), l["failed"].as_u64()),
        (Some(12), Some(0)),
        "{l}"
    );
}
