//! The real `rtmfp serve` and the real `rtmfp connect` together on loopback,
//! IPv4 and IPv6: the report's JSON fields agree with what the server says,
//! and a burst of 200 concurrent sessions all succeed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

/// `rtmfp serve` on ephemeral loopback ports, killed on drop.
struct Serve {
    child: Child,
    fingerprint: String,
    addrs: Vec<SocketAddr>,
}

impl Serve {
    fn start(listen: &[&str]) -> Serve {
        let mut args = vec!["serve", "--ephemeral", "--json", "--handshake-rate", "0"];
        for l in listen {
            args.extend(["--listen", l]);
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut fingerprint = String::new();
        let mut addrs = Vec::new();
        while addrs.len() < listen.len() {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("serve reports its listening addresses");
            let v: Json = serde_json::from_str(&line).expect("serve --json writes JSON lines");
            if v["event"] == "listening" {
                addrs.push(v["addr"].as_str().unwrap().parse().unwrap());
                fingerprint = v["fingerprint"].as_str().unwrap().to_string();
            }
        }
        Serve {
            child,
            fingerprint,
            addrs,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("connect")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtmfp connect");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut so = stdout;
        let mut se = stderr;
        let _ = std::io::Read::read_to_end(&mut so, &mut out);
        let _ = std::io::Read::read_to_end(&mut se, &mut err);
        let _ = tx.send((out, err));
    });
    let (stdout, stderr) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("connect finishes in time");
    let status = child.wait().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn lines(out: &Output) -> Vec<Json> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn check_report(serve: &Serve, server: SocketAddr, r: &Json) {
    assert_eq!(r["server_fingerprint"], serve.fingerprint.as_str(), "{r}");
    assert_eq!(
        r["server_info"]["code"], "NetConnection.Connect.Success",
        "{r}"
    );
    assert_eq!(
        r["server_info"]["serverFingerprint"],
        serve.fingerprint.as_str()
    );
    // The server names the connection by the client's peer ID.
    let peer_id = r["peer_id"].as_str().unwrap();
    assert_eq!(peer_id.len(), 64);
    assert_eq!(r["server_info"]["connectionID"], peer_id);
    assert_eq!(r["far_address"], server.to_string().as_str(), "{r}");
    assert!(r["keepalive"]["server_ms"].as_u64().unwrap() >= 5000, "{r}");
}

#[test]
fn serve_and_connect_over_ipv4_and_ipv6() {
    let v6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    let listen: &[&str] = if v6 {
        &["127.0.0.1:0", "[::1]:0"]
    } else {
        &["127.0.0.1:0"]
    };
    let serve = Serve::start(listen);
    for (i, addr) in serve.addrs.iter().enumerate() {
        let url = format!("rtmfp://{addr}/live");
        // The first run negotiates the strongest common group; the second
        // forces group 2, as Flash Player would.
        let group = if i == 0 { "auto" } else { "2" };
        let out = connect(&[&url, "--json", "--timeout", "10s", "--dh-group", group]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let l = lines(&out);
        let r = l
            .iter()
            .find(|v| v["server_info"].is_object())
            .expect("a report line");
        check_report(&serve, *addr, r);
        let expected_group = if i == 0 { 16 } else { 2 };
        assert_eq!(r["dh_group"], expected_group, "{r}");
    }
}

#[test]
fn two_hundred_concurrent_sessions_all_succeed() {
    let serve = Serve::start(&["127.0.0.1:0"]);
    let url = format!("rtmfp://{}/live", serve.addrs[0]);
    let out = connect(&[
        &url,
        "--json",
        "--sessions",
        "200",
        "--concurrency",
        "200",
        "--dh-group",
        "2",
        "--timeout",
        "30s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = lines(&out);
    let summary = l
        .iter()
        .find(|v| v["type"] == "load")
        .expect("a load summary");
    assert_eq!(summary["succeeded"], 200, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["concurrency"], 200);
}
