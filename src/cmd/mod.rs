//! One module per subcommand. Each `run` returns the process exit code
//! (see [`crate::cli::exit`]); errors are reported to the user there, not
//! propagated as panics.

pub mod connect;
pub mod connect_peer;
pub mod json;
pub mod monitor;
pub mod probe_nat;
pub mod probe_nat_peer;
pub mod probe_nat_rtmfp;
pub mod publish;
pub mod send;
pub mod serve;
pub mod signals;
pub mod stream_session;
pub mod subscribe;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr (or the dashboard's pane, see [`crate::tui::logs`]): human text, coloured only on a terminal. `RUST_LOG`
/// overrides the level chosen by -v/-q.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, or the dashboard's log pane while one runs.
        .with_writer(crate::tui::logs::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// A multi-threaded runtime sized for this tool: two workers are plenty,
/// as one task owns each endpoint.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A single-threaded runtime for a command that is one endpoint task: no
/// wakeups handed between worker threads, which cost a server about a fifth
/// of its CPU in context switches under handshake load (measured with perf).
pub fn runtime_single() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
