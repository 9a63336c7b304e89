//! The dashboard's state: the latest snapshot of every source, the derived
//! rates, history and events, and what the user chose (view, sort, filter,
//! selection). Rendering reads it ([`super::render`]); keys change it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::net::snapshot::{SessionRow, Snapshot, StreamRow, state_name};
use crate::proto::crypto::peer_id_hex;
use crate::proto::stats::DropReason;

/// The views, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Sessions,
    Flows,
    Packets,
    Streams,
    Events,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Sessions,
        View::Flows,
        View::Packets,
        View::Streams,
        View::Events,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Sessions => "Sessions",
            View::Flows => "Flows",
            View::Packets => "Packets",
            View::Streams => "Streams",
            View::Events => "Events",
        }
    }
}

/// Session table columns, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Peer,
    Addr,
    Kind,
    App,
    State,
    Age,
    Rtt,
    Var,
    Cwnd,
    Flight,
    Tx,
    Rx,
    Retx,
    Loss,
    Dh,
    Sec,
}

impl Column {
    pub const ALL: [Column; 16] = [
        Column::Peer,
        Column::Addr,
        Column::Kind,
        Column::App,
        Column::State,
        Column::Age,
        Column::Rtt,
        Column::Var,
        Column::Cwnd,
        Column::Flight,
        Column::Tx,
        Column::Rx,
        Column::Retx,
        Column::Loss,
        Column::Dh,
        Column::Sec,
    ];

    /// Which columns survive when the terminal is narrow, most wanted first.
    pub const PRIORITY: [Column; 16] = [
        Column::Peer,
        Column::Addr,
        Column::Rtt,
        Column::State,
        Column::Tx,
        Column::Rx,
        Column::Kind,
        Column::App,
        Column::Age,
        Column::Var,
        Column::Retx,
        Column::Loss,
        Column::Cwnd,
        Column::Flight,
        Column::Dh,
        Column::Sec,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Peer => "PEER",
            Column::Addr => "ADDRESS",
            Column::Kind => "KIND",
            Column::App => "APP",
            Column::State => "STATE",
            Column::Age => "AGE",
            Column::Rtt => "RTT",
            Column::Var => "±VAR",
            Column::Cwnd => "CWND",
            Column::Flight => "FLIGHT",
            Column::Tx => "TX/s",
            Column::Rx => "RX/s",
            Column::Retx => "RTX%",
            Column::Loss => "LOSS%",
            Column::Dh => "DH",
            Column::Sec => "HMAC/SSEQ",
        }
    }

    pub fn width(self) -> u16 {
        match self {
            Column::Peer => 8,
            Column::Addr => 21,
            Column::Kind => 6,
            Column::App => 10,
            Column::State => 7,
            Column::Age => 6,
            Column::Rtt => 7,
            Column::Var => 6,
            Column::Cwnd => 6,
            Column::Flight => 6,
            Column::Tx => 6,
            Column::Rx => 6,
            Column::Retx => 5,
            Column::Loss => 5,
            Column::Dh => 3,
            Column::Sec => 9,
        }
    }

    /// Numbers sort largest first by default; names A to Z.
    fn descending_by_default(self) -> bool {
        !matches!(
            self,
            Column::Peer | Column::Addr | Column::Kind | Column::App | Column::State
        )
    }
}

/// Aggregate rates for one second of history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub handshakes: f64,
    pub drops: f64,
    pub introductions: f64,
}

/// Seconds of history kept for the charts.
pub const HISTORY: usize = 600;
/// Session events kept.
const MAX_EVENTS: usize = 500;

/// Sums over every source, for the header and the charts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub uptime: Duration,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub handshakes: u64,
    pub drops: u64,
    pub introductions: u64,
    pub drops_by_reason: [u64; DropReason::COUNT],
    pub sessions: usize,
    pub retransmissions: u64,
}

/// A row of the sessions table: which source, which session, and its rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef {
    pub source: usize,
    pub index: usize,
    pub tx_rate: f64,
    pub rx_rate: f64,
}

/// What a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
}

pub struct App {
    pub title: String,
    pub sources: Vec<Arc<Snapshot>>,
    pub ended: Vec<bool>,
    /// Visible sessions, filtered and sorted.
    pub rows: Vec<RowRef>,
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    pub filtering: bool,
    pub selected: usize,
    selected_key: Option<(usize, u32)>,
    pub view: View,
    pub paused: bool,
    pub help: bool,
    pub details: bool,
    pub history: VecDeque<Point>,
    pub totals: Totals,
    last_point: Option<Totals>,
    pub events: VecDeque<String>,
    pub logs: Vec<String>,
    known: HashSet<(usize, u32)>,
    /// Per source: handle → (tx bytes, rx bytes) when rates were last taken.
    prev_bytes: Vec<HashMap<u32, (u64, u64)>>,
    prev_uptime: Vec<Duration>,
    /// Per source: handle → (tx, rx) bytes per second.
    rates: Vec<HashMap<u32, (f64, f64)>>,
}

/// Shortest time a rate is measured over, in seconds.
const RATE_WINDOW: f64 = 1.0;

impl App {
    pub fn new(title: impl Into<String>, sources: usize) -> Self {
        Self {
            title: title.into(),
            sources: (0..sources)
                .map(|_| Arc::new(Snapshot::default()))
                .collect(),
            ended: vec![false; sources],
            rows: Vec::new(),
            sort: Column::Age,
            descending: false,
            filter: String::new(),
            filtering: false,
            selected: 0,
            selected_key: None,
            view: View::Sessions,
            paused: false,
            help: false,
            details: false,
            history: VecDeque::new(),
            totals: Totals::default(),
            last_point: None,
            events: VecDeque::new(),
            logs: Vec::new(),
            known: HashSet::new(),
            prev_bytes: vec![HashMap::new(); sources],
            prev_uptime: vec![Duration::ZERO; sources],
            rates: vec![HashMap::new(); sources],
        }
    }

    /// A new snapshot from source `i`.
    pub fn update(&mut self, i: usize, snap: Arc<Snapshot>) {
        if i >= self.sources.len() || self.paused {
            return;
        }
        // Rates over at least a second: keepalives and pings are too
        // sparse for a per-frame rate to mean anything.
        let dt = snap
            .uptime
            .saturating_sub(self.prev_uptime[i])
            .as_secs_f64();
        if dt >= RATE_WINDOW || self.prev_bytes[i].is_empty() {
            let prev = &self.prev_bytes[i];
            let mut rates = HashMap::with_capacity(snap.sessions.len());
            let mut now = HashMap::with_capacity(snap.sessions.len());
            for s in &snap.sessions {
                if let Some(&(tx, rx)) = prev.get(&s.handle)
                    && dt > 0.0
                {
                    rates.insert(
                        s.handle,
                        (
                            s.tx_bytes.saturating_sub(tx) as f64 / dt,
                            s.rx_bytes.saturating_sub(rx) as f64 / dt,
                        ),
                    );
                }
                now.insert(s.handle, (s.tx_bytes, s.rx_bytes));
            }
            self.prev_bytes[i] = now;
            self.prev_uptime[i] = snap.uptime;
            self.rates[i] = rates;
        }
        self.session_events(i, &snap);
        self.sources[i] = snap;
        self.recompute();
    }

    /// Source `i` has stopped (its command finished).
    pub fn end(&mut self, i: usize) {
        if let Some(e) = self.ended.get_mut(i) {
            *e = true;
        }
    }

    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    pub fn set_logs(&mut self, lines: Vec<String>) {
        self.logs = lines;
    }

    fn session_events(&mut self, i: usize, snap: &Snapshot) {
        let mut current = HashSet::with_capacity(snap.sessions.len());
        for s in &snap.sessions {
            current.insert(s.handle);
            if self.known.insert((i, s.handle)) {
                let peer = s
                    .peer_id
                    .map(|p| peer_id_hex(&p)[..8].to_owned())
                    .unwrap_or_default();
                self.event(format!(
                    "{} session {} {} {} from {}",
                    clock(snap.uptime),
                    s.handle,
                    state_name(s.state),
                    peer,
                    s.far_addr
                ));
            }
        }
        let mut gone: Vec<u32> = self
            .known
            .iter()
            .filter(|(src, h)| *src == i && !current.contains(h))
            .map(|(_, h)| *h)
            .collect();
        // Set order is random; events should read the same every time.
        gone.sort_unstable();
        for h in gone {
            self.known.remove(&(i, h));
            self.event(format!("{} session {h} gone", clock(snap.uptime)));
        }
    }

    fn event(&mut self, line: String) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(line);
    }

    /// Totals, history, and the filtered, sorted rows.
    fn recompute(&mut self) {
        let mut t = Totals::default();
        for s in &self.sources {
            let e = &s.endpoint;
            t.uptime = t.uptime.max(s.uptime);
            t.rx_packets += e.rx_datagrams;
            t.tx_packets += e.tx_datagrams;
            t.rx_bytes += e.rx_bytes;
            t.tx_bytes += e.tx_bytes;
            t.handshakes += e.handshakes_answered + e.sessions_opened;
            t.drops += e.total_drops();
            for (a, b) in t.drops_by_reason.iter_mut().zip(e.drops) {
                *a += b;
            }
            t.introductions += s.introductions();
            t.sessions += s.sessions.len();
            t.retransmissions += s.retransmissions;
        }
        self.totals = t;
        match self.last_point {
            None => self.last_point = Some(t),
            Some(p) => {
                let dt = t.uptime.saturating_sub(p.uptime).as_secs_f64();
                if dt >= 1.0 {
                    let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    if self.history.len() == HISTORY {
                        self.history.pop_front();
                    }
                    self.history.push_back(Point {
                        rx_pps: r(t.rx_packets, p.rx_packets),
                        tx_pps: r(t.tx_packets, p.tx_packets),
                        rx_bps: r(t.rx_bytes, p.rx_bytes),
                        tx_bps: r(t.tx_bytes, p.tx_bytes),
                        handshakes: r(t.handshakes, p.handshakes),
                        drops: r(t.drops, p.drops),
                        introductions: r(t.introductions, p.introductions),
                    });
                    self.last_point = Some(t);
                }
            }
        }
        self.rebuild_rows();
    }

    pub fn session(&self, r: &RowRef) -> &SessionRow {
        &self.sources[r.source].sessions[r.index]
    }

    pub fn selected_row(&self) -> Option<(&RowRef, &SessionRow)> {
        let r = self.rows.get(self.selected)?;
        Some((r, self.session(r)))
    }

    pub fn streams(&self) -> impl Iterator<Item = &StreamRow> {
        self.sources.iter().flat_map(|s| s.streams.iter())
    }

    fn rebuild_rows(&mut self) {
        let needle = self.filter.to_lowercase();
        let mut rows = Vec::with_capacity(self.totals.sessions);
        for (si, snap) in self.sources.iter().enumerate() {
            for (idx, s) in snap.sessions.iter().enumerate() {
                if !needle.is_empty() && !matches(s, &needle) {
                    continue;
                }
                let (tx_rate, rx_rate) =
                    self.rates[si].get(&s.handle).copied().unwrap_or((0.0, 0.0));
                rows.push(RowRef {
                    source: si,
                    index: idx,
                    tx_rate,
                    rx_rate,
                });
            }
        }
        let sources = &self.sources;
        let col = self.sort;
        rows.sort_by(|a, b| {
            let (sa, sb) = (
                &sources[a.source].sessions[a.index],
                &sources[b.source].sessions[b.index],
            );
            compare(col, a, sa, b, sb).then((a.source, sa.handle).cmp(&(b.source, sb.handle)))
        });
        if self.descending {
            rows.reverse();
        }
        self.rows = rows;
        // Keep the same session selected as rows move.
        if let Some(key) = self.selected_key
            && let Some(pos) = self
                .rows
                .iter()
                .position(|r| (r.source, self.sources[r.source].sessions[r.index].handle) == key)
        {
            self.selected = pos;
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.remember_selection();
    }

    fn remember_selection(&mut self) {
        self.selected_key = self
            .rows
            .get(self.selected)
            .map(|r| (r.source, self.sources[r.source].sessions[r.index].handle));
        // Ask each endpoint to list the flows of the selected session (with
        // many sessions, snapshots list no one else's).
        for (i, s) in self.sources.iter().enumerate() {
            let h = self.selected_key.filter(|k| k.0 == i).map(|k| k.1);
            s.focus.set(h);
        }
    }

    fn move_selection(&mut self, delta: isize) {
        if self.rows.is_empty() {
            return;
        }
        let max = self.rows.len() as isize - 1;
        self.selected = (self.selected as isize + delta).clamp(0, max) as usize;
        self.remember_selection();
    }

    /// Handles one key; `page` is how many rows a page holds.
    pub fn on_key(&mut self, key: KeyEvent, page: usize) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d'))
        {
            return Action::Quit;
        }
        if self.filtering {
            match key.code {
                KeyCode::Enter => self.filtering = false,
                KeyCode::Esc => {
                    self.filtering = false;
                    self.filter.clear();
                    self.rebuild_rows();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                    self.rebuild_rows();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.chars().count() < 64 => {
                    self.filter.push(c);
                    self.rebuild_rows();
                }
                _ => {}
            }
            return Action::None;
        }
        if self.help || self.details {
            if matches!(
                key.code,
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') | KeyCode::Char('q')
            ) {
                self.help = false;
                self.details = false;
            }
            return Action::None;
        }
        let page = page.max(1) as isize;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Tab | KeyCode::Right => self.cycle_view(1),
            KeyCode::BackTab | KeyCode::Left => self.cycle_view(-1),
            KeyCode::Char(c @ '1'..='5') => {
                self.view = View::ALL[(c as u8 - b'1') as usize];
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-page),
            KeyCode::PageDown => self.move_selection(page),
            KeyCode::Home => self.move_selection(isize::MIN / 2),
            KeyCode::End => self.move_selection(isize::MAX / 2),
            KeyCode::Enter => match self.view {
                View::Sessions if !self.rows.is_empty() => self.details = true,
                View::Sessions => {}
                _ => self.view = View::Sessions,
            },
            KeyCode::Char('s') => self.cycle_sort(),
            KeyCode::Char('S') | KeyCode::Char('r') => {
                self.descending = !self.descending;
                self.rebuild_rows();
            }
            KeyCode::Char('/') => {
                self.filtering = true;
                self.view = View::Sessions;
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            KeyCode::Char('f') => self.view = View::Flows,
            _ => {}
        }
        Action::None
    }

    fn cycle_view(&mut self, d: isize) {
        let n = View::ALL.len() as isize;
        let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0) as isize;
        self.view = View::ALL[((i + d).rem_euclid(n)) as usize];
    }

    fn cycle_sort(&mut self) {
        let i = Column::ALL
            .iter()
            .position(|c| *c == self.sort)
            .unwrap_or(0);
        self.sort = Column::ALL[(i + 1) % Column::ALL.len()];
        self.descending = self.sort.descending_by_default();
        self.rebuild_rows();
    }

    /// Sort by `col` (tests, and a future click on a header).
    pub fn sort_by(&mut self, col: Column, descending: bool) {
        self.sort = col;
        self.descending = descending;
        self.rebuild_rows();
    }

    pub fn set_filter(&mut self, f: &str) {
        self.filter = f.to_owned();
        self.rebuild_rows();
    }
}

fn matches(s: &SessionRow, needle: &str) -> bool {
    let peer = s.peer_id.as_ref().map(peer_id_hex).unwrap_or_default();
    peer.contains(needle)
        || s.far_addr.to_string().contains(needle)
        || s.app
            .as_deref()
            .is_some_and(|a| a.to_lowercase().contains(needle))
        || state_name(s.state).contains(needle)
        || s.kind.name().contains(needle)
}

fn compare(
    col: Column,
    ra: &RowRef,
    a: &SessionRow,
    rb: &RowRef,
    b: &SessionRow,
) -> std::cmp::Ordering {
    let f = |x: f64, y: f64| x.total_cmp(&y);
    match col {
        Column::Peer => a.peer_id.cmp(&b.peer_id),
        Column::Addr => a.far_addr.cmp(&b.far_addr),
        Column::Kind => a.kind.cmp(&b.kind),
        Column::App => a.app.cmp(&b.app),
        Column::State => state_name(a.state).cmp(state_name(b.state)),
        Column::Age => a.age.cmp(&b.age),
        Column::Rtt => a.srtt.cmp(&b.srtt),
        Column::Var => a.rttvar.cmp(&b.rttvar),
        Column::Cwnd => a.cwnd.cmp(&b.cwnd),
        Column::Flight => a.in_flight.cmp(&b.in_flight),
        Column::Tx => f(ra.tx_rate, rb.tx_rate),
        Column::Rx => f(ra.rx_rate, rb.rx_rate),
        Column::Retx => f(a.retrans_pct(), b.retrans_pct()),
        Column::Loss => f(a.loss_pct(), b.loss_pct()),
        Column::Dh => a.dh_group.cmp(&b.dh_group),
        Column::Sec => (a.hmac, a.sseq).cmp(&(b.hmac, b.sseq)),
    }
}

/// `h:mm:ss` of an uptime.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
