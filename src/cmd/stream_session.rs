//! What `publish`, `subscribe` and `send` share: the stream URL, session
//! setup (on `connect`'s resolver and endpoint), running the stream app
//! until it is done or interrupted, and reporting failures the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::{DhChoice, StreamTargetArgs, exit};
use crate::client::failure::{Kind, Phase};
use crate::client::stream::{StreamApp, StreamConfig, StreamInput, StreamRole};
use crate::client::{Failure, StreamUrl};
use crate::media::netstream::Lifetimes;
use crate::net::{Clock, Driver};
use crate::proto::crypto::CryptoSettings;

/// How long an interrupted command waits for its orderly close.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Parses the URL and `--stream` into the server URL and stream name.
pub fn target(cmd: &str, t: &StreamTargetArgs) -> Result<StreamUrl, i32> {
    StreamUrl::parse(&t.url, t.stream.as_deref()).map_err(|e| {
        eprintln!("rtmfp {cmd}: bad URL {:?}: {e}", t.url);
        exit::USAGE
    })
}

/// Prints a failure (JSON on stdout or text on stderr) and returns its exit code.
pub fn report_failure(cmd: &str, json: bool, f: &Failure) -> i32 {
    if json {
        println!("{}", f.to_json());
    } else {
        eprintln!("rtmfp {cmd}: {f}");
    }
    f.exit_code()
}

/// A stream app ready to run: its driver and the channel that feeds it.
pub struct Session {
    pub driver: Driver<super::peer_session::AnyStream>,
    pub input: tokio::sync::mpsc::Sender<StreamInput>,
}

/// Resolves, binds and builds the stream app for `role`.
pub async fn open(
    cmd: &str,
    json: bool,
    t: &StreamTargetArgs,
    url: &StreamUrl,
    role: StreamRole,
    lifetimes: Option<Lifetimes>,
    out: Box<dyn FnMut(crate::client::stream::StreamOutput) + Send>,
) -> Result<Session, i32> {
    let candidates = match super::connect::resolve(&url.server, t.timeout).await {
        Ok(c) => c,
        Err(m) => {
            let f = Failure::new(Phase::Resolve, Kind::Resolve, m);
            return Err(report_failure(cmd, json, &f));
        }
    };
    // As `connect`: Flash-era servers (Mona, Cumulus) are recognised by
    // their certificate and keyed with Flash Player's single group-2 key.
    let groups = super::connect::groups(t.dh_group);
    let auto = t.dh_group == DhChoice::Auto;
    let (identity, flash) = super::connect::identities(&groups, auto).map_err(|e| {
        eprintln!("rtmfp {cmd}: {e}");
        exit::FAILURE
    })?;
    let crypto = CryptoSettings {
        groups,
        ..CryptoSettings::preferred()
    };
    let clock = Clock::new();
    let (ep, sockets, locals) = super::connect::endpoint(
        &identity,
        &crypto,
        flash.as_ref(),
        &candidates,
        &clock,
        None,
    )
    .map_err(|e| {
        eprintln!("rtmfp {cmd}: cannot bind: {e}");
        exit::FAILURE
    })?;
    let cfg = StreamConfig {
        url: url.server.original.clone(),
        app: url.server.app.clone(),
        stream: url.stream.clone(),
        role,
        candidates,
        local_addrs: locals,
        timeout: t.timeout,
        lifetimes,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let app = super::peer_session::AnyStream::Server(StreamApp::new(cfg, out));
    // As `connect`: a closed port is reported at once, not after --timeout.
    let driver = Driver::new(ep, app, sockets, clock)
        .with_commands(rx)
        .with_transport_errors();
    Ok(Session { driver, input: tx })
}

/// Runs the app until it is done. The first SIGINT/SIGTERM asks it to stop
/// in order (closeStream, deleteStream, close); `interrupted` is set then.
pub async fn run(cmd: &str, s: &mut Session, interrupted: Arc<AtomicBool>) -> Result<(), i32> {
    let tx = s.input.clone();
    let flag = interrupted.clone();
    let stop = super::signals::Stop::install();
    let signals = tokio::spawn(async move {
        stop.wait().await;
        flag.store(true, Ordering::SeqCst);
        let _ = tx.send(StreamInput::Stop).await;
    });
    // A second signal (or a stuck close) ends the driver for good.
    let hard_stop = {
        let flag = interrupted.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if flag.load(Ordering::SeqCst) {
                    tokio::time::sleep(INTERRUPT_GRACE).await;
                    return;
                }
            }
        }
    };
    let r = s.driver.run(hard_stop, Duration::from_millis(500)).await;
    signals.abort();
    r.map_err(|e| {
        eprintln!("rtmfp {cmd}: {e}");
        exit::FAILURE
    })
}
