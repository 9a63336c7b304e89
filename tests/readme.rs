//! Every command line in README.md's ```sh blocks runs as written.
//!
//! How lines are picked and run (README.md is shared: new commands get
//! checked by adding them there):
//! - Each ```sh block is a scenario, run top to bottom through `sh -c` with
//!   the test build of `rtmfp` first on PATH; `\` continues a line, anything
//!   after ` #` is a comment. Lines that neither start with `rtmfp ` nor pipe
//!   into it (`cargo …`) are build instructions and are not run here.
//! - `127.0.0.1:19350` is the README's example server address: the test
//!   starts `rtmfp serve --ephemeral --handshake-rate 0` on a free loopback
//!   port and puts that address in its place.
//! - An `rtmfp serve` line starts a server for the rest of its block, on free
//!   ports instead of the `--listen`, `--probe-addr` and `--metrics` it names
//!   (later lines of the block get the new addresses; a serve that names a
//!   `--listen` already in use replaces that server), with `--ephemeral`
//!   unless it names an identity (nothing is written under $HOME) and
//!   `--json` (its events tell the test when clients have arrived). It must
//!   report that it listens (and serve `/metrics` when asked), and exit 0 on
//!   SIGTERM at the end of the block.
//! - Lines run in a scratch directory (files they write land there);
//!   `ffmpeg` lines run too (they make the media files later lines use).
//! - A line ending in `&` runs in the background; the next line starts once
//!   its server has seen it connect (and register its `--name`). At the end
//!   of the block (or before its server is replaced), one that is waiting
//!   out a `--stay`/`--hold`/`--loop inf` gets SIGINT; every background line
//!   must exit 0.
//! - A `--dashboard` line runs in tmux: the dashboard must come up, its
//!   server must see it start (connect, publish or play), and `q` must end
//!   it with exit code 0.
//! - Every other line must exit 0 within two minutes. `--sessions N` runs at
//!   most 100 sessions, to keep a debug build's test run short.
//! - A line ending in `# not run` is skipped; say in its comment why it
//!   cannot be run here. Keep such lines rare.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");
const EXAMPLE_ADDR: &str = "127.0.0.1:19350";
const MAX_SESSIONS: u32 = 100;
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
const READY_LIMIT: Duration = Duration::from_secs(30);

/// One logical command line of a ```sh block.
#[derive(Debug, Clone)]
struct Line {
    cmd: String,
    background: bool,
}

/// The runnable lines of README.md's ```sh blocks, block by block.
fn readme_blocks() -> Vec<Vec<Line>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut block = Vec::new();
    let mut in_sh = false;
    let mut acc = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with("```") {
            if in_sh && !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
            in_sh = !in_sh && matches!(t, "```sh" | "```bash" | "```shell");
            acc.clear();
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            continue;
        }
        let full = std::mem::take(&mut acc) + t;
        if full.ends_with("# not run") {
            continue;
        }
        let mut cmd = match full.find(" #") {
            Some(i) => full[..i].trim_end().to_owned(),
            None => full.trim().to_owned(),
        };
        let background = cmd.ends_with('&') && !cmd.ends_with("&&");
        if background {
            cmd.pop();
            cmd = cmd.trim_end().to_owned();
        }
        let runnable = ["rtmfp ", "ffmpeg "].iter().any(|p| cmd.starts_with(p));
        if runnable || cmd.contains("| rtmfp ") {
            block.push(Line { cmd, background });
        }
    }
    blocks
}

fn free_port() -> u16 {
    // Free for UDP and TCP alike (`--metrics` is TCP).
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// `text` with every whole `from` (not followed by another digit) replaced.
fn replace_addr(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let end = i + from.len();
        let whole = !rest[end..].starts_with(|c: char| c.is_ascii_digit());
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `--sessions N` capped at [`MAX_SESSIONS`].
fn cap_sessions(cmd: &str) -> String {
    let Some(i) = cmd.find("--sessions ") else {
        return cmd.to_owned();
    };
    let start = i + "--sessions ".len();
    let end = start
        + cmd[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(cmd.len() - start);
    match cmd[start..end].parse::<u32>() {
        Ok(n) => format!("{}{}{}", &cmd[..start], n.min(MAX_SESSIONS), &cmd[end..]),
        Err(_) => cmd.to_owned(),
    }
}

/// Where README lines run (files they write, like `-o cam.flv`, land here).
fn workdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rtmfp-readme-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn path_env() -> String {
    let dir = std::path::Path::new(BIN).parent().unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A shell running one README line, in its own process group (a pipeline is
/// signalled and killed as a whole).
fn shell(cmd: &str, stdout: Stdio) -> Child {
    let script = if cmd.contains('|') {
        cmd.to_owned()
    } else {
        format!("exec {cmd}")
    };
    Command::new("sh")
        .args(["-c", &script])
        .env("PATH", path_env())
        .env_remove("RUST_LOG")
        .current_dir(workdir())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sh")
}

fn signal_group(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Collects a child's stderr in the background.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    if let Some(mut e) = child.stderr.take() {
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
    }
    buf
}

fn tail(s: &str) -> String {
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(600)).collect()
}

/// Waits for `child` to exit (killing its group after `limit`).
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > end {
            signal_group(child, "-KILL");
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `rtmfp serve` started by the test, its JSON events kept in order.
struct Server {
    child: Child,
    addr: SocketAddr,
    events: Receiver<Json>,
    log: Vec<Json>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl Server {
    fn start(args: &[String], what: &str) -> Result<Server, String> {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn rtmfp serve");
        let stderr = collect_stderr(&mut child);
        let out = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Json>(&l)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            events,
            log: Vec::new(),
            stderr,
            what: what.to_owned(),
        };
        match s.wait_event(0, |e| e["event"] == "listening") {
            Some(i) => {
                s.addr = s.log[i]["addr"].as_str().unwrap().parse().unwrap();
                Ok(s)
            }
            None => Err(format!(
                "{what}: did not report listening: {}",
                tail(&s.stderr.lock().unwrap())
            )),
        }
    }

    /// Index of the first event from `from` on that satisfies `ok`.
    fn wait_event(&mut self, from: usize, ok: impl Fn(&Json) -> bool) -> Option<usize> {
        let end = Instant::now() + READY_LIMIT;
        let mut i = from;
        loop {
            while i < self.log.len() {
                if ok(&self.log[i]) {
                    return Some(i);
                }
                i += 1;
            }
            let left = end.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(e) => self.log.push(e),
                Err(_) => return None,
            }
        }
    }

    fn seen(&mut self) -> usize {
        self.log.extend(self.events.try_iter());
        self.log.len()
    }

    /// SIGTERM; it must exit 0.
    fn stop(mut self) -> Result<(), String> {
        signal_group(&self.child, "-TERM");
        match wait_exit(&mut self.child, Duration::from_secs(20)) {
            Some(0) => Ok(()),
            code => Err(format!(
                "{}: exit {code:?} after SIGTERM: {}",
                self.what,
                tail(&self.stderr.lock().unwrap())
            )),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal_group(&self.child, "-KILL");
        let _ = self.child.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return format!("connect {addr}: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

struct Background {
    child: Child,
    line: String,
    stderr: Arc<Mutex<String>>,
    /// Index into the block's servers of the one it talks to, if any.
    server: Option<usize>,
}

/// One ```sh block being run.
struct Scenario<'a> {
    main: &'a mut Server,
    /// Servers started by this block's lines, by their README address.
    servers: Vec<(String, Option<Server>)>,
    /// README address → address used here.
    map: Vec<(String, String)>,
    background: Vec<Background>,
    failures: Vec<String>,
}

impl Scenario<'_> {
    fn substitute(&self, cmd: &str) -> String {
        let mut out = cmd.to_owned();
        for (from, to) in self.map.iter().rev() {
            out = replace_addr(&out, from, to);
        }
        cap_sessions(&out)
    }

    /// The server (index into `servers`, or None for the main one) `cmd`
    /// talks to, by the address it names.
    fn server_of(&self, cmd: &str) -> Option<Option<usize>> {
        for (i, (_, s)) in self.servers.iter().enumerate() {
            if let Some(s) = s
                && cmd.contains(&s.addr.to_string())
            {
                return Some(Some(i));
            }
        }
        cmd.contains(&self.main.addr.to_string()).then_some(None)
    }

    fn server_mut(&mut self, which: Option<usize>) -> &mut Server {
        match which {
            Some(i) => self.servers[i].1.as_mut().unwrap(),
            None => self.main,
        }
    }

    fn run(&mut self, line: &Line) {
        let w: Vec<&str> = line.cmd.split_whitespace().collect();
        if line.cmd.contains("--dashboard") {
            self.dashboard(line);
        } else if w.get(1) == Some(&"serve") && !line.cmd.contains('|') {
            self.serve(line);
        } else if line.background {
            self.start_background(line);
        } else {
            let cmd = self.substitute(&line.cmd);
            let mut child = shell(&cmd, Stdio::null());
            let err = collect_stderr(&mut child);
            let code = wait_exit(&mut child, COMMAND_LIMIT);
            if code != Some(0) {
                self.failures.push(format!(
                    "{}: exit {code:?} (as run: {cmd}): {}",
                    line.cmd,
                    tail(&err.lock().unwrap())
                ));
            }
        }
    }

    fn serve(&mut self, line: &Line) {
        let words: Vec<String> = line.cmd.split_whitespace().map(str::to_owned).collect();
        let mut args = Vec::new();
        let mut listen = None;
        let mut metrics = None;
        let mut i = 1;
        while i < words.len() {
            let w = &words[i];
            let takes_addr = matches!(w.as_str(), "--listen" | "-l" | "--probe-addr" | "--metrics");
            if takes_addr && let Some(a) = words.get(i + 1) {
                let ip = a.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip);
                let new = format!("{ip}:{}", free_port());
                if matches!(w.as_str(), "--listen" | "-l") {
                    listen = Some(a.clone());
                }
                if w == "--metrics" {
                    metrics = Some(new.clone());
                }
                args.push(w.clone());
                args.push(new.clone());
                self.map.push((a.clone(), new));
                i += 2;
                continue;
            }
            args.push(w.clone());
            i += 1;
        }
        if listen.is_none() {
            args.extend(["--listen".into(), format!("127.0.0.1:{}", free_port())]);
        }
        if !args.iter().any(|a| a == "--identity" || a == "--ephemeral") {
            args.push("--ephemeral".into());
        }
        if !args.iter().any(|a| a == "--json") {
            args.push("--json".into());
        }
        // A server on an address in use replaces the one there (after the
        // clients of that one are done).
        if let Some(l) = &listen
            && let Some(k) = self.servers.iter().position(|(a, s)| a == l && s.is_some())
        {
            self.finish_background();
            if let Some(old) = self.servers[k].1.take()
                && let Err(e) = old.stop()
            {
                self.failures.push(e);
            }
        }
        let mut server = match Server::start(&args, &line.cmd) {
            Ok(s) => s,
            Err(e) => return self.failures.push(e),
        };
        if let Some(m) = metrics {
            let page = match server.wait_event(0, |e| e["event"] == "metrics") {
                Some(i) => http_get(server.log[i]["addr"].as_str().unwrap_or(&m), "/metrics"),
                None => "no metrics event".into(),
            };
            if !page.contains("rtmfp_sessions") {
                self.failures.push(format!(
                    "{}: /metrics on {m} answered: {}",
                    line.cmd,
                    tail(&page)
                ));
            }
        }
        let key = listen.unwrap_or_default();
        if !key.is_empty() {
            self.map.push((key.clone(), server.addr.to_string()));
        }
        self.servers.push((key, Some(server)));
    }

    fn start_background(&mut self, line: &Line) {
        let cmd = self.substitute(&line.cmd);
        let server = self.server_of(&cmd);
        let seen = server.map(|s| self.server_mut(s).seen());
        let mut child = shell(&cmd, Stdio::null());
        let stderr = collect_stderr(&mut child);
        // Ready once its server has seen it connect (and take its name).
        if let (Some(s), Some(from)) = (server, seen) {
            let name = {
                let w: Vec<&str> = cmd.split_whitespace().collect();
                w.iter()
                    .position(|a| *a == "--name")
                    .and_then(|i| w.get(i + 1))
                    .map(|n| n.to_string())
            };
            let srv = self.server_mut(s);
            let ready = match &name {
                Some(n) => srv.wait_event(from, |e| e["event"] == "peer_name" && e["name"] == *n),
                None => srv.wait_event(from, |e| e["event"] == "connect"),
            };
            if ready.is_none() {
                self.failures.push(format!(
                    "{}: its server never saw it connect{}: {}",
                    line.cmd,
                    name.map(|n| format!(" as {n:?}")).unwrap_or_default(),
                    tail(&stderr.lock().unwrap())
                ));
            }
        }
        self.background.push(Background {
            child,
            line: line.cmd.clone(),
            stderr,
            server: server.flatten(),
        });
    }

    fn finish_background(&mut self) {
        for mut b in std::mem::take(&mut self.background) {
            let waits_out = ["--stay", "--hold", "--loop inf"]
                .iter()
                .any(|o| b.line.contains(o));
            if waits_out && b.child.try_wait().unwrap().is_none() {
                signal_group(&b.child, "-INT");
            }
            let code = wait_exit(&mut b.child, COMMAND_LIMIT);
            if code != Some(0) {
                self.failures.push(format!(
                    "{} & (server {:?}): exit {code:?}: {}",
                    b.line,
                    b.server,
                    tail(&b.stderr.lock().unwrap())
                ));
            }
        }
    }

    fn dashboard(&mut self, line: &Line) {
        if Command::new("tmux").arg("-V").output().is_err() {
            if std::env::var_os("RTMFP_NO_TMUX").is_none() {
                self.failures.push(format!(
                    "{}: tmux is needed (apt-get install tmux)",
                    line.cmd
                ));
            }
            return;
        }
        let mut cmd = self.substitute(&line.cmd);
        let is_serve = cmd.split_whitespace().nth(1) == Some("serve");
        if is_serve {
            if !cmd.contains("--listen") {
                cmd.push_str(&format!(" --listen 127.0.0.1:{}", free_port()));
            }
            if !cmd.contains("--ephemeral") && !cmd.contains("--identity") {
                cmd.push_str(" --ephemeral");
            }
        }
        let server = self
            .server_of(&cmd)
            .filter(|_| !is_serve)
            .map(|k| (k, self.server_mut(k).seen()));
        let started = match cmd.split_whitespace().nth(1) {
            Some("publish") => "publish",
            Some("subscribe") => "play",
            _ => "connect",
        };
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rtmfp-readme-{}-{run}", std::process::id());
        let tmux = |args: &[&str]| {
            Command::new("tmux")
                .args(["-L", &name])
                .args(args)
                .output()
                .expect("tmux")
        };
        let script = format!(
            "PATH='{}'; export PATH; cd '{}'; {cmd}; echo EXITED $?; sleep 30",
            path_env(),
            workdir().display()
        );
        let out = tmux(&["new-session", "-d", "-x", "120", "-y", "36", &script]);
        let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
        let wait = |ok: &dyn Fn(&str) -> bool| {
            let end = Instant::now() + READY_LIMIT;
            loop {
                let s = screen();
                if ok(&s) || Instant::now() > end {
                    return (ok(&s), s);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let result = if !out.status.success() {
            Err(format!("tmux: {out:?}"))
        } else {
            match wait(&|s| s.contains("q quit")) {
                (false, s) => Err(format!("dashboard did not come up:\n{s}")),
                // A client's dashboard is quit once its work has started.
                (true, s)
                    if server.is_some_and(|(k, from)| {
                        self.server_mut(k)
                            .wait_event(from, |e| e["event"] == started)
                            .is_none()
                    }) =>
                {
                    Err(format!("its server never saw it connect:\n{s}"))
                }
                (true, _) => {
                    tmux(&["send-keys", "q"]);
                    match wait(&|s| s.contains("EXITED")) {
                        (true, s) if s.contains("EXITED 0") => Ok(()),
                        (_, s) => Err(format!("q did not exit 0:\n{s}")),
                    }
                }
            }
        };
        let _ = tmux(&["kill-server"]);
        if let Err(e) = result {
            self.failures
                .push(format!("{} (as run: {cmd}): {e}", line.cmd));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.finish_background();
        for (_, s) in std::mem::take(&mut self.servers) {
            if let Some(s) = s
                && let Err(e) = s.stop()
            {
                self.failures.push(e);
            }
        }
        self.failures
    }
}

#[test]
fn readme_has_commands_to_check() {
    let lines: Vec<String> = readme_blocks()
        .into_iter()
        .flatten()
        .map(|l| l.cmd)
        .collect();
    for c in [
        "rtmfp serve",
        "rtmfp connect",
        "rtmfp probe-nat",
        "rtmfp subscribe",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(c)), "{c}: {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("| rtmfp publish")),
        "{lines:?}"
    );
}

#[test]
fn substitution_is_by_whole_address_and_sessions_are_capped() {
    assert_eq!(
        replace_addr("a 127.0.0.1:3478 127.0.0.1:34789", "127.0.0.1:3478", "X"),
        "a X 127.0.0.1:34789"
    );
    assert_eq!(
        cap_sessions("c --sessions 1000 --x"),
        "c --sessions 100 --x"
    );
    assert_eq!(cap_sessions("c --sessions 7"), "c --sessions 7");
}

#[test]
fn every_readme_command_runs_as_written() {
    let mut main = Server::start(
        &[
            "serve".into(),
            "--ephemeral".into(),
            "--json".into(),
            "--handshake-rate".into(),
            "0".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
        ],
        "the test's server",
    )
    .unwrap();
    let main_addr = main.addr.to_string();
    let mut failures = Vec::new();
    for block in readme_blocks() {
        let mut sc = Scenario {
            main: &mut main,
            servers: Vec::new(),
            map: vec![(EXAMPLE_ADDR.to_owned(), main_addr.clone())],
            background: Vec::new(),
            failures: Vec::new(),
        };
        for line in &block {
            sc.run(line);
        }
        failures.extend(sc.finish());
    }
    assert!(
        failures.is_empty(),
        "README commands that fail:\n{}",
        failures.join("\n")
    );
}
