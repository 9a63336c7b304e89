//! One rule for every command: SIGINT and SIGTERM end the work cleanly
//! (sessions closed in order), the summary so far is printed, and the exit
//! code says what happened (documented per command; `cli::exit::INTERRUPTED`
//! when the work was cut short before its result).
//!
//! Usage, inside the runtime and before any long wait:
//! ```no_run
//! # async fn f() {
//! let stop = rtmfp::cmd::signals::Stop::install();
//! // … driver.run(stop.wait_unit(), grace).await …
//! if let Some(sig) = stop.signal() {
//!     eprintln!("stopped by {}", sig.name());
//! }
//! # }
//! ```

use tokio::sync::watch;

/// Which signal stopped the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// The process's SIGINT/SIGTERM, watched once and shared by every task.
/// After `install`, neither signal kills the process: the command decides.
#[derive(Debug, Clone)]
pub struct Stop {
    rx: watch::Receiver<Option<Signal>>,
}

impl Stop {
    /// Starts watching both signals. Must be called inside a tokio runtime.
    /// If they cannot be watched, `wait` never resolves and the signals keep
    /// their default action (the process dies), as before.
    pub fn install() -> Self {
        let (tx, rx) = watch::channel(None);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::spawn(async move {
                        let s = tokio::select! {
                            _ = int.recv() => Signal::Interrupt,
                            _ = term.recv() => Signal::Terminate,
                        };
                        tracing::debug!("{}: stopping", s.name());
                        let _ = tx.send(Some(s));
                        // Keep the handlers installed: a second signal
                        // must not kill the process mid-cleanup.
                        loop {
                            tokio::select! {
                                _ = int.recv() => {}
                                _ = term.recv() => {}
                            }
                        }
                    });
                }
                _ => tracing::warn!("cannot watch SIGINT/SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = tx.send(Some(Signal::Interrupt));
                }
            });
        }
        Self { rx }
    }

    /// A `Stop` that never fires (tests, embedding).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(None);
        std::mem::forget(tx);
        Self { rx }
    }

    /// The signal received so far, if any.
    pub fn signal(&self) -> Option<Signal> {
        *self.rx.borrow()
    }

    /// Resolves at the first signal.
    pub async fn wait(&self) -> Signal {
        let mut rx = self.rx.clone();
        // The borrow guard must not live across an await (it is not Send).
        let got = rx.wait_for(Option::is_some).await.ok().and_then(|s| *s);
        match got {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }

    /// [`Self::wait`] without the value: the shape `Driver::run` takes.
    pub async fn wait_unit(&self) {
        self.wait().await;
    }
}
