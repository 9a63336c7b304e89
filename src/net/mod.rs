//! The tokio edge (DESIGN.md "net"): UDP sockets, the wall clock and the OS
//! random generator around one sans-IO [`Endpoint`]. One task owns the
//! endpoint with `&mut` (no mutex); the application logic that sits on top
//! (a server, a client command) runs inside that task through [`App`].

pub mod memory;
pub mod snapshot;
mod socket;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::proto::endpoint::{CryptoDone, CryptoJob, Endpoint, Event, MAX_DATAGRAM};
use crate::proto::stats::EndpointStats;
use crate::proto::{Instant, Rng};

pub use socket::{Outgoing, RecvBuffers, SEND_BATCH, UdpSocket, bind};

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&mut self, dst: &mut [u8]) {
        // Without OS randomness no key or cookie is safe; there is no
        // sensible way to continue.
        getrandom::fill(dst).expect("operating system random generator failed");
    }
}

/// Maps the monotonic wall clock onto the core's `Instant`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: std::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.base.elapsed().as_micros() as u64)
    }

    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.base + Duration::from_micros(t.as_micros())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Application logic driven inside the endpoint's task.
pub trait App {
    /// Messages from outside the task (other tasks, the terminal).
    type Command: Send + 'static;

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event);

    fn on_command(&mut self, _ep: &mut Endpoint, _now: Instant, _cmd: Self::Command) {}

    /// The application's own next deadline, if any.
    fn timeout(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, _ep: &mut Endpoint, _now: Instant) {}

    /// Shutdown was requested (a signal): called once, before the driver
    /// closes every session, so the app can note where its work stood.
    fn on_shutdown(&mut self, _ep: &mut Endpoint, _now: Instant) {}

    /// True when the driver should stop.
    fn done(&self) -> bool {
        false
    }

    /// Adds what the app knows to a dashboard snapshot (apps, peer kinds,
    /// server counters, streams). Called only while someone watches.
    fn annotate(&self, _snap: &mut snapshot::Snapshot) {}
}

/// Jobs queued or running per crypto worker thread: a burst of a hundred
/// clients (a room joining at once, a load run) is answered without resends,
/// while a full queue still holds under half a second of 4096-bit work
/// (about 3 ms each here). With 32, a burst of 200 from one address took
/// seven resend rounds (up to 28 s) to get in; the keying budget, not this
/// queue, is what bounds the CPU a flood can take.
pub const CRYPTO_JOBS_PER_THREAD: usize = 128;

/// The default number of crypto worker threads: one per spare core (at
/// least one, so a single-core host still answers pings during a handshake).
pub fn default_crypto_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

type JobAndReply = (CryptoJob, mpsc::UnboundedSender<CryptoDone>);

/// Worker threads running endpoints' Diffie-Hellman jobs
/// ([`Endpoint::poll_crypto_job`]); one set can serve several drivers (the
/// load generator's). The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct CryptoThreads {
    jobs: std::sync::mpsc::SyncSender<JobAndReply>,
}

impl CryptoThreads {
    /// `threads` workers sharing a queue of `capacity` jobs.
    pub fn spawn(threads: usize, capacity: usize) -> io::Result<Self> {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<JobAndReply>(capacity.max(1));
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        for i in 0..threads.max(1) {
            let job_rx = std::sync::Arc::clone(&job_rx);
            std::thread::Builder::new()
                .name(format!("rtmfp-crypto-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let next = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((job, reply)) = next else { return };
                        // A driver gone meanwhile no longer wants the result.
                        let _ = reply.send(job.run());
                    }
                })?;
        }
        Ok(Self { jobs })
    }
}

/// A driver's connection to the crypto threads.
struct CryptoLink {
    threads: CryptoThreads,
    reply: mpsc::UnboundedSender<CryptoDone>,
    done: mpsc::UnboundedReceiver<CryptoDone>,
}

/// Counts of what the edge itself saw (the core counts the rest).
#[derive(Debug, Default, Clone, Copy)]
pub struct EdgeStats {
    pub send_errors: u64,
    pub recv_errors: u64,
    /// GSO runs (several datagrams to one destination in one message).
    pub batched_sends: u64,
    pub datagrams_sent: u64,
    /// Send system calls made (sendmmsg carries several runs, each to its
    /// own destination): `datagrams_sent / send_calls` is the batching.
    pub send_calls: u64,
}

/// Owns the endpoint and its sockets and runs them until the app is done
/// or shutdown is requested.
pub struct Driver<A: App> {
    pub ep: Endpoint,
    pub app: A,
    sockets: Vec<UdpSocket>,
    clock: Clock,
    commands: Option<mpsc::Receiver<A::Command>>,
    stats_tx: Option<watch::Sender<EndpointStats>>,
    tap: Option<snapshot::SnapshotTap>,
    pub edge: EdgeStats,
    rx: RecvBuffers,
    /// Outgoing datagrams waiting for one sendmmsg: runs to one destination
    /// (GSO messages, `out`), back to back.
    tx: Vec<u8>,
    out: Vec<Outgoing>,
    /// ICMP errors are read from the sockets (see [`Driver::with_transport_errors`]).
    transport_errors: bool,
    crypto: Option<CryptoLink>,
}

/// Receive batches taken from one socket before looking at the others.
const RECV_BURSTS: usize = 4;
/// Most datagrams coalesced into one send.
const MAX_SEGMENTS: usize = 32;

impl<A: App> Driver<A> {
    /// `sockets[i]` must be registered in `ep` as interface `i`.
    pub fn new(ep: Endpoint, app: A, sockets: Vec<UdpSocket>, clock: Clock) -> Self {
        Self {
            ep,
            app,
            sockets,
            clock,
            commands: None,
            stats_tx: None,
            tap: None,
            edge: EdgeStats::default(),
            rx: RecvBuffers::default(),
            tx: vec![0u8; MAX_SEGMENTS * MAX_DATAGRAM],
            out: Vec::with_capacity(SEND_BATCH),
            transport_errors: false,
            crypto: None,
        }
    }

    /// Reads ICMP unreachable errors from the sockets and hands them to
    /// [`Endpoint::handle_unreachable`], so an opening session to a closed
    /// port fails at once. For clients (peers too: sessions opened by peer ID
    /// ignore them, see `handle_unreachable`): a server has no use for them.
    pub fn with_transport_errors(mut self) -> Self {
        self.transport_errors = self
            .sockets
            .iter()
            .all(|s| s.enable_transport_errors().is_ok());
        self
    }

    /// Runs the endpoint's Diffie-Hellman jobs (`EndpointConfig::crypto_jobs`
    /// > 0) on `threads`; without, they run inline in this task.
    pub fn with_crypto_threads(mut self, threads: Option<&CryptoThreads>) -> Self {
        self.crypto = threads.map(|t| {
            let (reply, done) = mpsc::unbounded_channel();
            CryptoLink {
                threads: t.clone(),
                reply,
                done,
            }
        });
        self
    }

    pub fn with_commands(mut self, rx: mpsc::Receiver<A::Command>) -> Self {
        self.commands = Some(rx);
        self
    }

    pub fn with_stats(mut self, tx: watch::Sender<EndpointStats>) -> Self {
        self.stats_tx = Some(tx);
        self
    }

    /// Publishes [`snapshot::Snapshot`]s through the tap while anyone
    /// subscribes to it (dashboard, `--stats-interval`, `/metrics`).
    pub fn with_snapshots(mut self, tap: snapshot::SnapshotTap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// As [`Driver::with_snapshots`], on a driver already built.
    pub fn set_snapshots(&mut self, tap: snapshot::SnapshotTap) {
        self.tap = Some(tap);
    }

    /// Stops publishing snapshots: readers see the channel close (the
    /// dashboard marks the source ended).
    pub fn end_snapshots(&mut self) {
        self.tap = None;
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Runs until the app says it is done, or `shutdown` resolves; then
    /// closes every session in order and lingers up to `grace` for the
    /// Close Acks.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> io::Result<()> {
        tokio::pin!(shutdown);
        let mut shutting_down: Option<Instant> = None;
        let mut last_stats = Instant::ZERO;
        loop {
            let now = self.clock.now();
            self.process(now).await;
            if let Some(tx) = &self.stats_tx
                && now.saturating_since(last_stats) >= Duration::from_millis(250)
            {
                last_stats = now;
                tx.send_replace(self.ep.stats());
            }
            if let Some(tap) = &mut self.tap {
                let app = &self.app;
                tap.poll(&self.ep, &self.edge, now, |s| app.annotate(s));
            }
            if let Some(deadline) = shutting_down {
                if self.ep.session_count() == 0 || now >= deadline {
                    return Ok(());
                }
            } else if self.app.done() {
                return Ok(());
            }
            let mut deadline =
                crate::proto::time::earliest(self.ep.poll_timeout(), self.app.timeout());
            if let Some(d) = shutting_down {
                deadline = crate::proto::time::earliest(deadline, Some(d));
            }
            if self.stats_tx.is_some() {
                deadline =
                    crate::proto::time::earliest(deadline, Some(now + Duration::from_millis(250)));
            }
            if let Some(tap) = &self.tap {
                deadline = crate::proto::time::earliest(deadline, tap.deadline());
            }
            let sleep_until = deadline
                .map(|d| self.clock.to_std(d))
                .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(3600));
            let sockets = &self.sockets;
            let readable = poll_fn(|cx| {
                for (i, s) in sockets.iter().enumerate() {
                    if let Poll::Ready(r) = s.poll_recv_ready(cx) {
                        return Poll::Ready((i, r));
                    }
                }
                Poll::Pending
            });
            let commands = &mut self.commands;
            let command = async {
                match commands.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let want_errors = self.transport_errors;
            let errors = async move {
                // Clients have one socket per address family: no allocation
                // on this per-packet path.
                match sockets.as_slice() {
                    [a] if want_errors => (0, a.error_ready().await),
                    [a, b, ..] if want_errors => tokio::select! {
                        r = a.error_ready() => (0, r),
                        r = b.error_ready() => (1, r),
                    },
                    _ => std::future::pending().await,
                }
            };
            let crypto = &mut self.crypto;
            let crypto_done = async {
                match crypto.as_mut() {
                    Some(w) => w.done.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                (i, r) = errors => {
                    if r.is_ok() {
                        let now = self.clock.now();
                        let ep = &mut self.ep;
                        self.sockets[i].take_unreachable(64, |a| ep.handle_unreachable(now, a));
                    }
                }
                done = crypto_done => {
                    if let Some(d) = done {
                        let now = self.clock.now();
                        self.ep.complete_crypto_job(now, d);
                        if let Some(w) = self.crypto.as_mut() {
                            while let Ok(d) = w.done.try_recv() {
                                self.ep.complete_crypto_job(now, d);
                            }
                        }
                    }
                }
                (i, r) = readable => {
                    if r.is_ok() {
                        self.drain_socket(i);
                    }
                }
                cmd = command => {
                    match cmd {
                        Some(c) => {
                            let now = self.clock.now();
                            self.app.on_command(&mut self.ep, now, c);
                        }
                        None => self.commands = None,
                    }
                }
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
                _ = &mut shutdown, if shutting_down.is_none() => {
                    let now = self.clock.now();
                    // Handshake work still queued is worth nothing now.
                    self.ep.discard_pending_handshakes();
                    self.app.on_shutdown(&mut self.ep, now);
                    self.ep.close_all(now);
                    shutting_down = Some(now + grace);
                }
            }
        }
    }

    fn drain_socket(&mut self, i: usize) {
        let Self {
            ep,
            sockets,
            rx,
            clock,
            edge,
            ..
        } = self;
        for _ in 0..RECV_BURSTS {
            let now = clock.now();
            let r = sockets[i].recv_batch(rx, |from, data, ecn| {
                ep.handle_datagram_ecn(now, i as u16, from, data, ecn);
            });
            match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors surface here on Linux (port unreachable from
                // an earlier send); they say nothing about this socket.
                Err(_) => edge.recv_errors += 1,
            }
        }
    }

    /// Timers, transmits and events until the endpoint is quiet.
    async fn process(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if self.app.timeout().is_some_and(|t| t <= now) {
            self.app.on_timeout(&mut self.ep, now);
        }
        // Bounded: a timer that keeps rearming itself at `now` must not spin.
        let mut due_reruns = 4u8;
        loop {
            let mut progressed = false;
            while let Some(job) = self.ep.poll_crypto_job() {
                progressed = true;
                match &self.crypto {
                    // The endpoint bounds its responder jobs by the queue's
                    // size; should one not fit (a queue shared by several
                    // drivers), it runs here.
                    Some(link) => {
                        if let Err(
                            std::sync::mpsc::TrySendError::Full((job, _))
                            | std::sync::mpsc::TrySendError::Disconnected((job, _)),
                        ) = link.threads.jobs.try_send((job, link.reply.clone()))
                        {
                            self.ep.complete_crypto_job(now, job.run());
                        }
                    }
                    None => self.ep.complete_crypto_job(now, job.run()),
                }
            }
            while let Some(e) = self.ep.poll_event() {
                self.app.on_event(&mut self.ep, now, e);
                progressed = true;
            }
            // What the app just did may have armed a timer that is already
            // due (a new session's first IHellos): run it now. Left to the
            // select below it waits for tokio's next millisecond tick,
            // which was most of the time to open a peer session (p2p_open).
            if due_reruns > 0 && self.ep.poll_timeout().is_some_and(|t| t <= now) {
                due_reruns -= 1;
                self.ep.handle_timeout(now);
                progressed = true;
            }
            if self.flush_transmits(now).await {
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// Drains the endpoint's transmits: runs of equal-sized datagrams to the
    /// same destination become one GSO message, and up to [`SEND_BATCH`]
    /// such messages (one per destination: a relay's fan-out) go in one
    /// sendmmsg. Returns whether anything was sent.
    async fn flush_transmits(&mut self, now: Instant) -> bool {
        let mut any = false;
        // Bytes of `tx` holding datagrams not sent yet, the interface of
        // the messages in `out`, and whether the last message is closed (a
        // shorter datagram can only end a GSO run).
        let mut used = 0;
        let mut iface = 0u16;
        let mut closed = false;
        self.out.clear();
        loop {
            let room = &mut self.tx[used..used + MAX_DATAGRAM];
            let Some(t) = self.ep.poll_transmit(now, room) else {
                break;
            };
            any = true;
            let limit = self
                .sockets
                .get(t.iface as usize)
                .map_or(1, |s| s.max_gso_segments().min(MAX_SEGMENTS));
            let joins = self.out.last().is_some_and(|m| {
                iface == t.iface
                    && m.dst == t.dst
                    && m.ecn == t.ecn
                    && !closed
                    && t.len <= m.segment
                    && m.segs < limit
            });
            if joins {
                let m = self.out.last_mut().expect("checked");
                m.len += t.len;
                m.segs += 1;
                closed = t.len < m.segment;
            } else {
                if !self.out.is_empty() && (iface != t.iface || self.out.len() == SEND_BATCH) {
                    // Send what we have, then move the new datagram to the front.
                    self.send_out(iface).await;
                    self.tx.copy_within(used..used + t.len, 0);
                    used = 0;
                }
                iface = t.iface;
                closed = false;
                self.out.push(Outgoing {
                    dst: t.dst,
                    start: used,
                    len: t.len,
                    segment: t.len,
                    segs: 1,
                    ecn: t.ecn,
                });
            }
            used += t.len;
            if used + MAX_DATAGRAM > self.tx.len() {
                self.send_out(iface).await;
                used = 0;
            }
        }
        if !self.out.is_empty() {
            self.send_out(iface).await;
        }
        any
    }

    /// Sends every message in `out` on socket `iface`, then empties it.
    async fn send_out(&mut self, iface: u16) {
        let Self {
            sockets,
            tx,
            out,
            edge,
            ..
        } = self;
        let msgs = std::mem::take(out);
        let Some(sock) = sockets.get(iface as usize) else {
            *out = msgs;
            out.clear();
            return;
        };
        let mut i = 0;
        while i < msgs.len() {
            match sock.try_send_many(tx, &msgs[i..]) {
                Ok(n) => {
                    edge.send_calls += 1;
                    for m in &msgs[i..i + n] {
                        edge.datagrams_sent += m.segs as u64;
                        edge.batched_sends += u64::from(m.segs > 1);
                    }
                    if n == 0 {
                        // Not expected of the kernel; do not spin on it.
                        edge.send_errors += 1;
                    }
                    i += n.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if sock.writable().await.is_err() {
                        edge.send_errors += (msgs.len() - i) as u64;
                        break;
                    }
                }
                Err(_) => {
                    // Lost like any datagram (the protocol retransmits);
                    // alone through quinn-udp, whose handling turns GSO
                    // off on a device that refuses it.
                    let m = &msgs[i];
                    edge.send_calls += 1;
                    if m.segs > 1 && sock.try_send_one(tx, m).is_ok() {
                        edge.datagrams_sent += m.segs as u64;
                        edge.batched_sends += 1;
                    } else {
                        edge.send_errors += 1;
                    }
                    i += 1;
                }
            }
        }
        *out = msgs;
        out.clear();
    }
}
