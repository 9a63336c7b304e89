//! What `--dashboard` and `--stats-interval` mean for any command that runs
//! endpoints. A command makes one snapshot tap per endpoint
//! ([`Monitor::tap`]), gives each to its `Driver::with_snapshots`, and calls
//! [`Monitor::start`] with the receivers: that is the whole hook.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use crate::cli::{MonitorArgs, exit};
use crate::net::snapshot::{Snapshot, SnapshotTap};
use crate::tui::{Dashboard, Options, Source};

/// Shortest `--stats-interval`.
const MIN_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// The dashboard and/or the statistics printer of one command.
pub struct Monitor {
    dashboard: Option<Dashboard>,
    printer: Option<tokio::task::JoinHandle<()>>,
}

/// Refuses what cannot work before anything starts: `--dashboard` off a
/// terminal (exit code 2, as for any usage error).
pub fn check(args: &MonitorArgs, command: &str) -> Result<(), i32> {
    if args.dashboard
        && let Err(msg) = crate::tui::check_terminal()
    {
        eprintln!("rtmfp {command}: {msg}");
        return Err(exit::USAGE);
    }
    Ok(())
}

impl Monitor {
    /// Whether anything watches snapshots (else no tap is needed).
    pub fn wanted(args: &MonitorArgs) -> bool {
        args.dashboard || args.stats_interval.is_some()
    }

    /// The snapshot period the consumers in `args` need; `extra` adds
    /// another consumer's period (e.g. `/metrics`).
    pub fn period(args: &MonitorArgs, extra: Option<Duration>) -> Duration {
        let mut p = Duration::from_secs(3600);
        if args.dashboard {
            p = p.min(args.refresh);
        }
        if let Some(s) = args.stats_interval {
            p = p.min(s.max(MIN_STATS_INTERVAL) / 2);
        }
        if let Some(e) = extra {
            p = p.min(e);
        }
        p.max(Duration::from_millis(20))
    }

    /// A tap for one endpoint, with the period `args` need.
    pub fn tap(args: &MonitorArgs, extra: Option<Duration>) -> (SnapshotTap, Source) {
        SnapshotTap::channel(Self::period(args, extra))
    }

    /// Starts what `args` ask for over `sources`. `json_key` names the
    /// command's JSON line tag ("event" for serve, "type" for connect).
    pub fn start(
        args: &MonitorArgs,
        title: &str,
        sources: Vec<Source>,
        json_key: &'static str,
    ) -> std::io::Result<Self> {
        let printer = args.stats_interval.map(|every| {
            let sources = sources.clone();
            tokio::spawn(print_stats(
                sources,
                every.max(MIN_STATS_INTERVAL),
                json_key,
            ))
        });
        let dashboard = if args.dashboard {
            Some(Dashboard::start(
                sources,
                Options {
                    title: title.to_owned(),
                    refresh: args.refresh,
                    log_file: args.log_file.clone(),
                },
            )?)
        } else {
            None
        };
        Ok(Self { dashboard, printer })
    }

    /// Resolves when the user quit the dashboard; never without one.
    pub async fn quit_requested(&self) {
        match &self.dashboard {
            Some(d) => d.quit_requested().await,
            None => std::future::pending().await,
        }
    }

    /// As [`Monitor::quit_requested`], but owning what it waits on, so a
    /// spawned task can turn the quit key into a stop request.
    pub fn on_quit(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let quit = self.dashboard.as_ref().map(Dashboard::quit_receiver);
        async move {
            match quit {
                Some(mut q) => {
                    let _ = q.wait_for(|q| *q).await;
                }
                None => std::future::pending().await,
            }
        }
    }

    pub fn has_dashboard(&self) -> bool {
        self.dashboard.is_some()
    }

    /// Gives the terminal back and stops printing.
    pub fn finish(mut self) {
        if let Some(d) = self.dashboard.take()
            && let Err(e) = d.finish()
        {
            tracing::warn!("dashboard: {e}");
        }
        if let Some(p) = self.printer.take() {
            p.abort();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(p) = self.printer.take() {
            p.abort();
        }
    }
}

/// Sums every source into one snapshot (a command with many endpoints).
pub fn merge(snaps: &[Arc<Snapshot>]) -> Snapshot {
    let mut m = Snapshot::default();
    for s in snaps {
        let (a, b) = (&mut m.endpoint, &s.endpoint);
        a.rx_datagrams += b.rx_datagrams;
        a.rx_bytes += b.rx_bytes;
        a.tx_datagrams += b.tx_datagrams;
        a.tx_bytes += b.tx_bytes;
        for (x, y) in a.drops.iter_mut().zip(b.drops) {
            *x += y;
        }
        a.sessions_opened += b.sessions_opened;
        a.sessions_closed += b.sessions_closed;
        a.sessions_failed += b.sessions_failed;
        a.sessions_current += b.sessions_current;
        a.handshakes_answered += b.handshakes_answered;
        m.edge.send_errors += s.edge.send_errors;
        m.edge.recv_errors += s.edge.recv_errors;
        m.uptime = m.uptime.max(s.uptime);
        m.sessions.extend(s.sessions.iter().cloned());
        m.streams.extend(s.streams.iter().cloned());
        m.retransmissions += s.retransmissions;
        m.messages_in += s.messages_in;
        m.messages_out += s.messages_out;
        m.media.streams += s.media.streams;
        m.media.publishers += s.media.publishers;
        m.media.subscribers += s.media.subscribers;
        m.media.relayed_bytes += s.media.relayed_bytes;
        if s.focus.get().is_some() && m.focus.get().is_none() {
            m.focus = s.focus.clone();
        }
        if s.server.is_some() && m.server.is_none() {
            m.server = s.server;
        }
    }
    m
}

async fn print_stats(mut sources: Vec<Source>, every: Duration, json_key: &'static str) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut prev: Option<Snapshot> = None;
    loop {
        tick.tick().await;
        let snaps: Vec<Arc<Snapshot>> = sources
            .iter_mut()
            .map(|rx| Arc::clone(&rx.borrow_and_update()))
            .collect();
        let now = merge(&snaps);
        let mut line = now.summary_json(prev.as_ref());
        if let Json::Object(map) = &mut line {
            let mut tagged = serde_json::Map::new();
            tagged.insert(json_key.to_owned(), Json::from("stats"));
            tagged.extend(std::mem::take(map));
            *map = tagged;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        prev = Some(Snapshot {
            sessions: Vec::new(),
            ..now
        });
    }
}
