//! `--dashboard` on the stream commands, in tmux with the real binaries:
//! `publish` and `subscribe` through a real `serve`, each showing its
//! stream (role, tags, audio/video counts, bytes, bit rate), the app its
//! session connected to, and its flows with their TC stream IDs; `q` stops
//! each in order and gives the terminal back before the summary prints.
//! And `connect --peer --dashboard`: peer sessions shown as direct (ours)
//! or introduced (the server's introduction of another peer to us).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtmfp::media::flv::{FlvHeader, FlvWriter, Tag, TagType};

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One tmux server of our own (killed on drop), one session per command.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux")
    }

    /// Starts `cmd` in session `name`; the shell then reports its exit
    /// code and whether the terminal is back in canonical mode.
    fn start(&self, name: &str, cmd: &str) {
        let cmd = format!(
            "{cmd}; echo EXITED $?; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 60"
        );
        let out = self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "100",
            "-y",
            "30",
            &cmd,
        ]);
        assert!(out.status.success(), "{out:?}");
    }

    fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    fn keys(&self, name: &str, keys: &str) {
        self.run(&["send-keys", "-t", name, keys]);
    }

    fn wait(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.screen(name);
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < end, "{name}: {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// 60 s of AVC-tagged video (25 fps, a keyframe a second) and AAC-tagged
/// audio (~43 frames/s) with filler payloads: the relay and the counts do
/// not decode them.
/// In a directory of the test's own (`tag`): tests run in parallel and
/// each removes its directory at the end.
fn fixture(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtmfp-dash-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("cam.flv");
    let f = std::fs::File::create(&p).unwrap();
    let hdr = FlvHeader {
        version: 1,
        has_audio: true,
        has_video: true,
    };
    let mut w = FlvWriter::new(f, &hdr).unwrap();
    w.write_tag(&Tag::new(
        TagType::Video,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e, 0xff],
    ))
    .unwrap();
    w.write_tag(&Tag::new(TagType::Audio, 0, vec![0xaf, 0, 0x12, 0x10]))
        .unwrap();
    let (mut tv, mut ta) = (0u32, 0u32);
    while tv < 60_000 {
        if ta <= tv {
            let mut a = vec![0xaf, 1];
            a.resize(120, (ta / 23) as u8);
            w.write_tag(&Tag::new(TagType::Audio, ta, a)).unwrap();
            ta += 23;
        } else {
            let key = tv % 1000 == 0;
            let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            v.resize(if key { 3000 } else { 600 }, (tv / 40) as u8);
            w.write_tag(&Tag::new(TagType::Video, tv, v)).unwrap();
            tv += 40;
        }
    }
    w.flush().unwrap();
    p
}

/// A real `serve` on a free loopback port (killed on drop), and its address.
fn serve() -> (Kill, String) {
    serve_with(&[])
}

fn serve_with(extra: &[&str]) -> (Kill, String) {
    let mut serve = Command::new(BIN)
        .args(["serve", "--ephemeral", "--json", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let out = BufReader::new(serve.stdout.take().unwrap());
    let serve = Kill(serve);
    let addr = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["event"] == "listening").then(|| v["addr"].as_str().unwrap().to_owned())
        })
        .expect("serve listening");
    (serve, addr)
}

fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("RTMFP_NO_TMUX").is_some(),
        "tmux is needed (apt-get install tmux)"
    );
    false
}

/// The row of `stream` in the streams view: its cells split on spaces.
fn stream_row(screen: &str, stream: &str, role: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let c: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
        (c.len() == 10 && c[0] == stream && c[1] == role).then_some(c)
    })
}

/// A count cell ("123", "1.2k") is above zero.
fn positive(cell: &str) -> bool {
    cell.trim_end_matches(['k', 'M'])
        .parse::<f64>()
        .is_ok_and(|n| n > 0.0)
}

#[test]
fn dashboard_on_publish_and_subscribe_in_tmux() {
    if !have_tmux() {
        return;
    }
    let flv = fixture("stream");
    let (serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let tmux = Tmux(format!("rtmfp-dash-stream-{}", std::process::id()));

    tmux.start(
        "pub",
        &format!("{BIN} publish {url} {} --dashboard", flv.display()),
    );
    // The server's row names the app the session connected to.
    tmux.wait("pub", "the server's row with its app", |s| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 4 && c[2] == "server" && c[3] == "live" && c[4] == "open"
        })
    });
    tmux.keys("pub", "4");
    let s = tmux.wait("pub", "the published stream with counts", |s| {
        stream_row(s, "cam", "publish").is_some_and(|c| {
            positive(&c[4])
                && positive(&c[5])
                && positive(&c[6])
                && positive(&c[8])
                && c[9] != "0b/s"
        })
    });
    assert!(s.contains("NetStream.Publish.Start"), "{s}");

    tmux.start("sub", &format!("{BIN} subscribe {url} --dashboard"));
    tmux.keys("sub", "4");
    tmux.wait("sub", "the played stream with audio and video", |s| {
        stream_row(s, "cam", "play").is_some_and(|c| {
            positive(&c[5]) && positive(&c[6]) && positive(&c[8]) && c[9] != "0b/s"
        })
    });
    // Its flows: the NetConnection's control flows and the server's
    // stream flows, tagged with stream ID 1 and counting messages.
    tmux.keys("sub", "2");
    tmux.wait("sub", "receiving stream flows with messages", |s| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 7 && c[1] == "recv" && c[2] == "stream" && c[3] == "1" && positive(c[7])
        }) && s.lines().any(|l| l.contains("send control"))
    });

    tmux.keys("sub", "q");
    let after = tmux.wait("sub", "subscribe to end", |s| {
        s.contains("EXITED") && s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    assert!(after.contains("EXITED 0"), "{after}");
    assert!(
        after.contains("received ") && after.contains("ended: stopped"),
        "{after}"
    );
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "raw mode left:\n{after}"
    );
    assert!(!after.contains("q quit"), "{after}");

    tmux.keys("pub", "q");
    let after = tmux.wait("pub", "publish to end", |s| {
        s.contains("EXITED") && s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    // Quitting a started stream is the user's way to end it: an orderly
    // unpublish and exit 0 (as `connect` does once connected).
    assert!(after.contains("EXITED 0"), "{after}");
    assert!(
        after.contains("published ") && !after.contains("(interrupted)"),
        "{after}"
    );
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "raw mode left:\n{after}"
    );

    // Quitting before the stream started is an interruption, as SIGINT.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live/cam", silent.local_addr().unwrap());
    tmux.start(
        "early",
        &format!(
            "{BIN} publish {url} {} --timeout 60s --dashboard",
            flv.display()
        ),
    );
    tmux.wait("early", "the dashboard", |s| s.contains("q quit"));
    tmux.keys("early", "q");
    let after = tmux.wait("early", "publish to end", |s| s.contains("EXITED"));
    assert!(after.contains("EXITED 130"), "{after}");

    // SIGTERM ends the command and gives the terminal back at once: the
    // dashboard does not wait for a key after a signal.
    let pidfile = flv.with_file_name("term.pid");
    tmux.start(
        "term",
        &format!(
            "sh -c 'echo $$ > {}; exec {BIN} publish rtmfp://{addr}/live/other {} --dashboard'",
            pidfile.display(),
            flv.display()
        ),
    );
    tmux.keys("term", "4");
    tmux.wait("term", "the second stream", |s| {
        stream_row(s, "other", "publish").is_some_and(|c| positive(&c[4]))
    });
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    let after = tmux.wait("term", "publish to end on SIGTERM", |s| {
        s.contains("EXITED") && s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    assert!(after.contains("EXITED 130"), "{after}");
    assert!(after.contains("(interrupted)"), "{after}");
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "raw mode left:\n{after}"
    );

    drop(serve);
    let _ = std::fs::remove_dir_all(flv.parent().unwrap());
}

#[test]
fn stream_commands_refuse_the_dashboard_off_a_terminal() {
    for args in [
        &["publish", "rtmfp://127.0.0.1:9/live/x", "-", "--dashboard"][..],
        &["subscribe", "rtmfp://127.0.0.1:9/live/x", "--dashboard"][..],
        &["send", "rtmfp://127.0.0.1:9/live/x", "onX", "--dashboard"][..],
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
        assert!(
            err.contains("--dashboard needs a terminal"),
            "{args:?}: {err}"
        );
    }
    // A STUN probe has no session to watch.
    let out = Command::new(BIN)
        .args(["probe-nat", "stun://127.0.0.1:9", "--stats-interval", "1s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session to show"));
    // FLV and JSON statistics cannot share standard output.
    let out = Command::new(BIN)
        .args([
            "subscribe",
            "rtmfp://127.0.0.1:9/live/x",
            "-o",
            "-",
            "--stats-interval",
            "1s",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-o -"));
}

#[test]
fn connect_peer_dashboard_marks_direct_and_introduced_sessions() {
    if !have_tmux() {
        return;
    }
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let tmux = Tmux(format!("rtmfp-dash-peer-{}", std::process::id()));
    let row = |s: &str, kind: &str| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 4 && c[2] == kind && c[4] == "open"
        })
    };
    tmux.start(
        "alice",
        &format!("{BIN} connect {url} --name alice --stay 60s --dashboard"),
    );
    tmux.wait("alice", "alice's server row", |s| row(s, "server"));
    tmux.start(
        "bob",
        &format!("{BIN} connect {url} --peer alice --stay 60s --dashboard"),
    );
    // Bob opened the session to alice by name: direct. Alice was
    // introduced to bob by the server: "introduced", cut visibly to fit.
    let s = tmux.wait("bob", "bob's direct session to alice", |s| {
        row(s, "direct") && row(s, "server")
    });
    assert!(
        s.lines()
            .any(|l| l.contains(" server ") && l.contains(" live ")),
        "{s}"
    );
    tmux.wait("alice", "alice's introduced session", |s| row(s, "intro…"));
    tmux.keys("bob", "q");
    let after = tmux.wait("bob", "bob to end", |s| s.contains("EXITED"));
    assert!(after.contains("EXITED 0"), "{after}");
    // What the log pane showed is printed once the terminal is back.
    assert!(after.contains("peer alice"), "{after}");
    tmux.keys("alice", "q");
    tmux.wait("alice", "alice to end", |s| s.contains("EXITED 0"));
}

#[test]
fn probe_nat_rtmfp_check_on_the_dashboard() {
    if !have_tmux() {
        return;
    }
    let free = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let (p1, p2) = (free(), free());
    let (a1, a2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.2:{p2}"));
    let (_serve, addr) = serve_with(&["--probe-addr", &a1, "--probe-addr", &a2]);
    let tmux = Tmux(format!("rtmfp-dash-nat-{}", std::process::id()));
    tmux.start(
        "nat",
        &format!("{BIN} probe-nat rtmfp://{addr}/live -4 --dashboard"),
    );
    // The check ends (the header says ENDED) and its figures stay up.
    tmux.wait("nat", "the finished check on the dashboard", |s| {
        s.contains("rtmfp probe-nat IPv4") && s.contains("ENDED") && s.contains("q quit")
    });
    tmux.keys("nat", "q");
    // The report prints once the terminal is back.
    let after = tmux.wait("nat", "probe-nat to end", |s| {
        s.contains("EXITED") && s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    assert!(after.contains("EXITED 0"), "{after}");
    assert!(after.contains("NAT probe of rtmfp://"), "{after}");
    assert!(
        after.lines().any(|l| l.trim() == "icanon"),
        "raw mode left:\n{after}"
    );
}

/// `publish --p2p` and `subscribe --peer` with dashboards: the stream rows
/// (the publisher counts its peer subscriber), the direct session, and no
/// peer line written over the screen.
#[test]
fn dashboard_on_a_direct_p2p_stream() {
    if !have_tmux() {
        return;
    }
    let flv = fixture("p2p");
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let tmux = Tmux(format!("rtmfp-dash-p2p-{}", std::process::id()));
    tmux.start(
        "pub",
        &format!(
            "{BIN} publish {url} {} --p2p --name cam1 --dashboard",
            flv.display()
        ),
    );
    tmux.wait("pub", "the publisher's server row", |s| {
        s.lines()
            .any(|l| l.contains(" server ") && l.contains(" live "))
    });
    tmux.start(
        "sub",
        &format!("{BIN} subscribe --peer cam1 {url} --dashboard"),
    );
    tmux.wait("sub", "the direct session to the publisher", |s| {
        s.lines().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 4 && c[2] == "direct" && c[4] == "open"
        })
    });
    tmux.keys("sub", "4");
    tmux.wait("sub", "the played stream", |s| {
        stream_row(s, "cam", "play").is_some_and(|c| positive(&c[5]) && positive(&c[6]))
    });
    tmux.keys("pub", "4");
    let s = tmux.wait("pub", "one direct subscriber", |s| {
        stream_row(s, "cam", "publish").is_some_and(|c| c[3] == "1" && positive(&c[4]))
    });
    // The header is intact: peer lines went to the log pane, not the screen.
    assert!(
        s.lines().next().unwrap().starts_with(" rtmfp publish"),
        "{s}"
    );
    tmux.keys("sub", "q");
    tmux.wait("sub", "subscribe to end", |s| s.contains("EXITED 0"));
    tmux.keys("pub", "q");
    tmux.wait("pub", "publish to end", |s| s.contains("EXITED 0"));
    let _ = std::fs::remove_dir_all(flv.parent().unwrap());
}
