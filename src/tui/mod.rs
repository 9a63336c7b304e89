//! The live dashboard (`--dashboard`): a ratatui view of the snapshots one
//! or more endpoints publish ([`crate::net::snapshot`]).
//!
//! It runs on a thread of its own, so painting never competes with the
//! endpoint's task for its thread; it reads `Arc` snapshots from watch
//! channels and holds nothing the packet path waits for. The terminal is
//! given back on every way out: `q`, Ctrl-C (a key in raw mode), the command
//! ending (SIGTERM, errors: [`Dashboard::finish`] or drop), and panics
//! (ratatui's panic hook).

pub mod app;
pub mod logs;
pub mod render;
#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_core::Stream;
use tokio::sync::watch;

use crate::net::snapshot::Snapshot;
pub use app::App;
pub use render::render;

/// Where a dashboard's data comes from: one receiver per endpoint.
pub type Source = watch::Receiver<Arc<Snapshot>>;

#[derive(Debug, Clone)]
pub struct Options {
    /// Shown top left, e.g. "rtmfp serve".
    pub title: String,
    /// Time between frames (and snapshot reads).
    pub refresh: Duration,
    /// Log lines also go here while the dashboard runs.
    pub log_file: Option<PathBuf>,
}

/// Why `--dashboard` cannot run here, if it cannot.
pub fn check_terminal() -> Result<(), String> {
    if !io::stdout().is_terminal() {
        return Err(
            "--dashboard needs a terminal, and standard output is not one \
             (use --stats-interval for JSON lines instead)"
                .into(),
        );
    }
    if !io::stdin().is_terminal() {
        return Err("--dashboard needs a terminal for keys, and standard input is not one".into());
    }
    Ok(())
}

/// A running dashboard.
pub struct Dashboard {
    stop: watch::Sender<bool>,
    quit: watch::Receiver<bool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Dashboard {
    /// Takes over the terminal and starts painting `sources`. Log lines go
    /// to the dashboard (and `opts.log_file`) until it ends.
    pub fn start(sources: Vec<Source>, opts: Options) -> io::Result<Self> {
        logs::capture(opts.log_file.as_deref())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (quit_tx, quit_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                let r = run_thread(sources, opts, stop_rx, quit_tx, ready_tx);
                logs::release();
                r
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                logs::release();
                return Err(e);
            }
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                stop: stop_tx,
                quit: quit_rx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the dashboard thread ended at start"))
            }
        }
    }

    /// Resolves once the user asked to quit (or the dashboard failed).
    pub async fn quit_requested(&self) {
        let mut q = self.quit.clone();
        let _ = q.wait_for(|q| *q).await;
    }

    /// What [`Dashboard::quit_requested`] waits on, for a task of its own.
    pub fn quit_receiver(&self) -> watch::Receiver<bool> {
        self.quit.clone()
    }

    /// Stops painting and gives the terminal back.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        let r = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the dashboard panicked"))),
            None => Ok(()),
        };
        logs::release();
        r
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

fn run_thread(
    sources: Vec<Source>,
    opts: Options,
    stop: watch::Receiver<bool>,
    quit: watch::Sender<bool>,
    ready: std::sync::mpsc::SyncSender<io::Result<()>>,
) -> io::Result<()> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(io::Error::other(e.to_string())));
            return Err(e);
        }
    };
    // Installs a panic hook that restores the terminal before printing.
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            let _ = ready.send(Err(io::Error::other(e.to_string())));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    let r = rt.block_on(event_loop(&mut terminal, sources, opts, stop));
    ratatui::restore();
    let _ = quit.send(true);
    r
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut sources: Vec<Source>,
    opts: Options,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut app = App::new(opts.title, sources.len());
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(opts.refresh.max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut log_generation = 0;
    let mut ended = vec![false; sources.len()];
    loop {
        let page = terminal.size()?.height.saturating_sub(8) as usize;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            ev = poll_fn(|cx| Pin::new(&mut events).poll_next(cx)) => match ev {
                Some(Ok(Event::Key(k))) => {
                    if app.on_key(k, page) == app::Action::Quit {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                // The terminal's input is gone.
                None => return Ok(()),
            },
            _ = tick.tick() => {
                for (i, rx) in sources.iter_mut().enumerate() {
                    match rx.has_changed() {
                        Ok(true) => {
                            let s = Arc::clone(&rx.borrow_and_update());
                            app.update(i, s);
                        }
                        Ok(false) => {}
                        Err(_) if !ended[i] => {
                            ended[i] = true;
                            app.end(i);
                        }
                        Err(_) => {}
                    }
                }
                if let Some((lines, g)) = logs::lines_since(log_generation) {
                    log_generation = g;
                    app.set_logs(lines);
                }
            }
        }
        terminal.draw(|f| render(&app, f))?;
    }
}
