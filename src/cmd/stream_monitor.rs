//! `--dashboard` and `--stats-interval` for `publish`, `subscribe` and
//! `send`: a snapshot tap on the stream session's endpoint, the dashboard's
//! quit key as an orderly stop, and the terminal given back before the
//! command prints its summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::monitor::Monitor;
use crate::cli::{MonitorArgs, exit};
use crate::client::stream::{Progress, StreamInput};
use crate::net::{App, Driver};

/// Starts what `args` ask for over `driver`'s endpoint. As for `connect`,
/// quitting the dashboard once the stream has started (`progress.started`)
/// is the user's way to end it: an orderly stop, exit 0, `interrupted`
/// left clear. Before that it is an interruption like SIGINT (exit 130).
pub fn watch<A: App>(
    cmd: &str,
    args: &MonitorArgs,
    driver: &mut Driver<A>,
    input: &tokio::sync::mpsc::Sender<StreamInput>,
    progress: &Arc<Progress>,
    interrupted: &Arc<AtomicBool>,
) -> Result<Monitor, i32> {
    let mut sources = Vec::new();
    if Monitor::wanted(args) {
        let (tap, rx) = Monitor::tap(args, None);
        driver.set_snapshots(tap);
        sources.push(rx);
    }
    let monitor = Monitor::start(args, &format!("rtmfp {cmd}"), sources, "type").map_err(|e| {
        eprintln!("rtmfp {cmd}: cannot start the dashboard: {e}");
        exit::FAILURE
    })?;
    if monitor.has_dashboard() {
        let (quit, tx) = (monitor.on_quit(), input.clone());
        let (progress, flag) = (progress.clone(), interrupted.clone());
        tokio::spawn(async move {
            quit.await;
            if !progress.started.load(Ordering::SeqCst) {
                flag.store(true, Ordering::SeqCst);
            }
            let _ = tx.send(StreamInput::Stop).await;
        });
    }
    Ok(monitor)
}

/// After the run: unless a signal (or a quit before the start) ended it,
/// the dashboard keeps the final figures up until the user quits; then it
/// gives the terminal back, so the summary prints below.
pub async fn unwatch<A: App>(driver: &mut Driver<A>, monitor: Monitor, interrupted: &AtomicBool) {
    driver.end_snapshots();
    if monitor.has_dashboard() && !interrupted.load(Ordering::SeqCst) {
        monitor.quit_requested().await;
    }
    monitor.finish();
}
