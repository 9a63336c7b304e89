//! Painting: a pure function of [`App`]. Only the rows that fit are built,
//! so the cost of a frame does not grow with the number of sessions.
//! Meaning never rides on colour alone: selection is reverse video, the
//! sort column is marked with an arrow, states are words.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table, Wrap};
use unicode_width::UnicodeWidthChar;

use super::app::{App, Column, View};
use crate::net::snapshot::{FlowKind, SessionRow, state_name};
use crate::proto::crypto::peer_id_hex;
use crate::proto::flow::Priority;
use crate::proto::stats::DropReason;

/// Smallest terminal the dashboard draws into.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;
/// Log lines shown under the main view when there is room.
const LOG_STRIP: u16 = 4;

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const REVERSED: Style = Style::new().add_modifier(Modifier::REVERSED);
const DIM: Style = Style::new().add_modifier(Modifier::DIM);

pub fn render(app: &App, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small ({}x{}); need {MIN_WIDTH}x{MIN_HEIGHT} (q quits)",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let strip = if area.height >= 20 && app.view != View::Events {
        LOG_STRIP + 1
    } else {
        0
    };
    let [header, tabs, main, logs, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(strip),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, f, header);
    render_tabs(app, f, tabs);
    match app.view {
        View::Sessions => render_sessions(app, f, main),
        View::Flows => render_flows(app, f, main),
        View::Packets => render_packets(app, f, main),
        View::Streams => render_streams(app, f, main),
        View::Events => render_events(app, f, main),
    }
    if strip > 0 {
        let block = Block::new().borders(Borders::TOP).title(" log ");
        let inner = block.inner(logs);
        f.render_widget(block, logs);
        let lines = tail(&app.logs, inner.height as usize, inner.width);
        f.render_widget(Paragraph::new(lines), inner);
    }
    render_help_line(app, f, help);
    if app.details {
        render_details(app, f, main);
    }
    if app.help {
        render_help(f, main);
    }
}

fn render_header(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.totals;
    let rate = app.history.back().copied().unwrap_or_default();
    let mut spans = vec![
        Span::styled(format!(" {} ", fit(&app.title, 24)), REVERSED),
        Span::raw(format!(
            " {} sessions │ in {}p/s {}B/s │ out {}p/s {}B/s │ up {}",
            t.sessions,
            si(rate.rx_pps),
            si(rate.rx_bps),
            si(rate.tx_pps),
            si(rate.tx_bps),
            super::app::clock(t.uptime)
        )),
    ];
    if app.paused {
        spans.push(Span::styled(" PAUSED ", REVERSED));
    }
    if app.all_ended() {
        spans.push(Span::styled(" ENDED ", REVERSED));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_tabs(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.title());
        if *v == app.view {
            spans.push(Span::styled(format!("[{}]", label.trim()), REVERSED));
        } else {
            spans.push(Span::raw(label));
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_help_line(app: &App, f: &mut Frame, area: Rect) {
    let line = if app.filtering {
        Line::from(vec![
            Span::styled(" filter: ", REVERSED),
            Span::raw(fit(&app.filter, area.width.saturating_sub(30) as usize)),
            Span::raw("▏ Enter keep · Esc clear"),
        ])
    } else {
        let mut s = String::from(
            " Tab view ↑↓ select Enter details s sort r reverse / filter p pause ? help q quit",
        );
        if !app.filter.is_empty() {
            s = format!(" filter \"{}\" · {s}", fit(&app.filter, 16));
        }
        Line::styled(s, DIM)
    };
    f.render_widget(Paragraph::new(line), area);
}

/// Columns that fit in `width`, in display order.
fn columns(width: u16) -> Vec<Column> {
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for c in Column::PRIORITY {
        let w = c.width() + 1;
        if used + w <= width {
            used += w;
            chosen.push(c);
        }
    }
    Column::ALL
        .into_iter()
        .filter(|c| chosen.contains(c))
        .collect()
}

/// The first row drawn, so that the selection stays in view.
fn scroll(selected: usize, height: usize) -> usize {
    selected.saturating_sub(height.saturating_sub(1))
}

fn render_sessions(app: &App, f: &mut Frame, area: Rect) {
    let title = format!(
        " sessions {}/{} · sort {} {} ",
        app.rows.len(),
        app.totals.sessions,
        app.sort.title(),
        if app.descending { "▼" } else { "▲" }
    );
    let block = Block::new().borders(Borders::TOP).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if app.rows.is_empty() {
        let msg = if app.totals.sessions == 0 {
            "no sessions yet"
        } else {
            "no session matches the filter"
        };
        f.render_widget(Paragraph::new(msg), inner);
        return;
    }
    let cols = columns(inner.width);
    let height = inner.height.saturating_sub(1) as usize;
    let first = scroll(app.selected, height);
    let header = Row::new(cols.iter().map(|c| {
        let mut t = c.title().to_owned();
        if *c == app.sort {
            t.push(if app.descending { '▼' } else { '▲' });
        }
        t
    }))
    .style(BOLD);
    let rows = app
        .rows
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, r)| {
            let s = app.session(r);
            let cells = cols
                .iter()
                .map(|c| cell(*c, s, r.tx_rate, r.rx_rate))
                .collect::<Vec<_>>();
            let row = Row::new(cells);
            if i == app.selected {
                row.style(REVERSED)
            } else {
                row
            }
        });
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width())).collect();
    f.render_widget(Table::new(rows, widths).header(header), inner);
}

fn cell(c: Column, s: &SessionRow, tx: f64, rx: f64) -> String {
    let w = c.width() as usize;
    match c {
        Column::Peer => s
            .peer_id
            .map(|p| peer_id_hex(&p)[..8].to_owned())
            .unwrap_or_else(|| "-".into()),
        Column::Addr => fit(&s.far_addr.to_string(), w),
        Column::Kind => fit(s.kind.name(), w),
        Column::App => s.app.as_deref().map_or("-".into(), |a| fit(a, w)),
        Column::State => state_name(s.state).into(),
        Column::Age => age(s.age),
        Column::Rtt => s.srtt.map_or("-".into(), ms),
        Column::Var => ms(s.rttvar),
        Column::Cwnd => si(s.cwnd as f64),
        Column::Flight => si(s.in_flight as f64),
        Column::Tx => si(tx),
        Column::Rx => si(rx),
        Column::Retx => format!("{:.1}", s.retrans_pct()),
        Column::Loss => format!("{:.1}", s.loss_pct()),
        Column::Dh => s.dh_group.map_or("-".into(), |g| g.to_string()),
        Column::Sec => format!("{}/{}", yes_no(s.hmac), yes_no(s.sseq)),
    }
}

fn yes_no((tx, rx): (bool, bool)) -> &'static str {
    match (tx, rx) {
        (true, true) => "both",
        (true, false) => "send",
        (false, true) => "recv",
        (false, false) => "no",
    }
}

fn render_flows(app: &App, f: &mut Frame, area: Rect) {
    let Some((_, s)) = app.selected_row() else {
        let block = Block::new().borders(Borders::TOP).title(" flows ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(
            Paragraph::new("no session selected (pick one in Sessions)"),
            inner,
        );
        return;
    };
    let peer = s
        .peer_id
        .map(|p| peer_id_hex(&p))
        .unwrap_or_else(|| "(no peer ID yet)".into());
    // Totals each way, so the title answers "how much went where".
    let (mut out, mut inn) = ((0u64, 0u64), (0u64, 0u64));
    for fl in &s.flows {
        let t = if fl.sending { &mut out } else { &mut inn };
        t.0 += fl.bytes;
        t.1 += fl.messages;
    }
    let totals = format!(
        "out {}B/{} msgs, in {}B/{} msgs",
        si(out.0 as f64),
        out.1,
        si(inn.0 as f64),
        inn.1
    );
    let addr = s.far_addr.to_string();
    let room = (area.width as usize).saturating_sub(15 + addr.len() + totals.len());
    let title = format!(" flows of {} {addr} · {totals} ", fit(&peer, room));
    let block = Block::new().borders(Borders::TOP).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if s.flows.is_empty() {
        let (tx, rx) = s.flow_count;
        let text = if tx + rx == 0 {
            "no flows".to_owned()
        } else {
            // Many sessions: the endpoint lists only the selected one's
            // flows, from its next snapshot on.
            format!("{tx} sending and {rx} receiving flows: listed from the next refresh")
        };
        f.render_widget(Paragraph::new(fit(&text, inner.width as usize)), inner);
        return;
    }
    // Sequence number and bytes in flight only where there is room: the
    // first 11 columns fill 80 columns.
    let wide = inner.width >= 100;
    let mut header = vec![
        "FLOW", "DIR", "KIND", "PRIO", "ASSOC", "BYTES", "MSGS", "ABND", "BUFFER", "WINDOW", "EXC",
    ];
    let mut widths = vec![5, 4, 14, 9, 5, 6, 6, 5, 6, 6, 4];
    if wide {
        header.extend(["SEQ", "IN FLIGHT"]);
        widths.extend([8, 9]);
    }
    let height = inner.height.saturating_sub(1) as usize;
    let rows = s.flows.iter().take(height).map(|fl| {
        let kind = FlowKind::of(&fl.metadata).to_string();
        let mut cells = vec![
            fl.id.to_string(),
            if fl.sending { "send" } else { "recv" }.into(),
            fit(&kind, 14),
            fl.priority.map_or("-".into(), priority),
            fl.return_for.map_or("-".into(), |r| r.to_string()),
            si(fl.bytes as f64),
            si(fl.messages as f64),
            if fl.sending {
                si(fl.abandoned as f64)
            } else {
                "-".into()
            },
            // Sending: bytes held until acknowledged; receiving: bytes
            // held for reassembly or not yet read.
            si(if fl.sending {
                fl.queued_or_capacity
            } else {
                fl.in_flight_or_buffered
            } as f64),
            si(fl.window as f64),
            fl.exception.map_or("-".into(), |e| e.to_string()),
        ];
        if wide {
            cells.push(fl.sequence.to_string());
            cells.push(if fl.sending {
                si(fl.in_flight_or_buffered as f64)
            } else {
                "-".into()
            });
        }
        Row::new(cells)
    });
    f.render_widget(
        Table::new(rows, widths.into_iter().map(Constraint::Length))
            .header(Row::new(header).style(BOLD)),
        inner,
    );
}

fn priority(p: Priority) -> String {
    match p {
        Priority::Background => "backgrnd",
        Priority::Bulk => "bulk",
        Priority::Data => "data",
        Priority::Routine => "routine",
        Priority::Priority => "priority",
        Priority::Immediate => "immediate",
        Priority::Flash => "flash",
        Priority::FlashOverride => "override",
    }
    .into()
}

fn render_packets(app: &App, f: &mut Frame, area: Rect) {
    let [charts, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(26)]).areas(area);
    let block = Block::new().borders(Borders::TOP).title(" per second ");
    let inner = block.inner(charts);
    f.render_widget(block, charts);
    type Pick = fn(&super::app::Point) -> f64;
    let series: [(&str, Pick); 6] = [
        ("in packets", |p| p.rx_pps),
        ("out packets", |p| p.tx_pps),
        ("in bytes", |p| p.rx_bps),
        ("out bytes", |p| p.tx_bps),
        ("handshakes", |p| p.handshakes),
        ("introductions", |p| p.introductions),
    ];
    let per = (inner.height / series.len() as u16).clamp(1, 4);
    let areas = Layout::vertical(vec![Constraint::Length(per); series.len()]).split(inner);
    let width = inner.width as usize;
    for ((name, pick), a) in series.iter().zip(areas.iter()) {
        let values: Vec<u64> = app
            .history
            .iter()
            .rev()
            .take(width)
            .rev()
            .map(|p| pick(p).round() as u64)
            .collect();
        let now = app.history.back().map_or(0.0, pick);
        let max = values.iter().copied().max().unwrap_or(0);
        let label = format!("{name} {} (max {})", si(now), si(max as f64));
        let [l, s] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(*a);
        f.render_widget(Paragraph::new(fit(&label, l.width as usize)), l);
        if s.height > 0 {
            f.render_widget(Sparkline::default().data(&values), s);
        }
    }
    let t = &app.totals;
    let mut lines = vec![Line::styled("drops by reason", BOLD)];
    for r in DropReason::ALL {
        lines.push(Line::raw(format!(
            "{:<16}{:>9}",
            r.name(),
            si(t.drops_by_reason[r as usize] as f64)
        )));
    }
    lines.push(Line::raw(format!(
        "{:<16}{:>9}",
        "total",
        si(t.drops as f64)
    )));
    lines.push(Line::styled("totals", BOLD));
    lines.push(Line::raw(format!(
        "{:<16}{:>9}",
        "handshakes",
        si(t.handshakes as f64)
    )));
    lines.push(Line::raw(format!(
        "{:<16}{:>9}",
        "introductions",
        si(t.introductions as f64)
    )));
    lines.push(Line::raw(format!(
        "{:<16}{:>9}",
        "retransmits",
        si(t.retransmissions as f64)
    )));
    let block = Block::new().borders(Borders::TOP | Borders::LEFT);
    let inner = block.inner(side);
    f.render_widget(block, side);
    f.render_widget(Paragraph::new(lines), inner);
}

fn render_streams(app: &App, f: &mut Frame, area: Rect) {
    let block = Block::new().borders(Borders::TOP).title(" streams ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let streams: Vec<_> = app.streams().collect();
    if streams.is_empty() {
        f.render_widget(Paragraph::new("no streams"), inner);
        return;
    }
    // A relay's streams have a publisher and subscribers; the stream a
    // command publishes or plays itself has counts of what went through.
    let header = Row::new([
        "STREAM",
        "ROLE",
        "PUBLISHER",
        "SUBS",
        "TAGS",
        "AUDIO",
        "VIDEO",
        "DATA",
        "BYTES",
        "BITRATE",
    ])
    .style(BOLD);
    let fixed = [8u16, 9, 5, 6, 6, 6, 5, 6, 9];
    let used: u16 = fixed.iter().sum::<u16>() + fixed.len() as u16;
    let name_w = inner.width.saturating_sub(used).max(8);
    let dash = || "-".to_owned();
    let rows = streams
        .iter()
        .take(inner.height.saturating_sub(1) as usize)
        .map(|s| {
            let l = s.local;
            let count = |f: fn(&crate::net::snapshot::LocalStream) -> u64| {
                l.as_ref().map_or_else(dash, |l| si(f(l) as f64))
            };
            Row::new([
                fit(&s.name, name_w as usize),
                match l {
                    None => "relayed",
                    Some(l) if l.publishing => "publish",
                    Some(_) => "play",
                }
                .to_owned(),
                s.publisher
                    .map(|p| peer_id_hex(&p)[..8].to_owned())
                    .unwrap_or_else(dash),
                // A command's own stream through a relay does not know its
                // subscribers; a direct (P2P) publisher does.
                if l.is_some() && s.subscribers == 0 {
                    dash()
                } else {
                    s.subscribers.to_string()
                },
                count(|l| l.tags()),
                count(|l| l.audio),
                count(|l| l.video),
                count(|l| l.data),
                count(|l| l.bytes),
                format!("{}b/s", si(s.bitrate as f64)),
            ])
        });
    let widths = std::iter::once(name_w)
        .chain(fixed)
        .map(Constraint::Length)
        .collect::<Vec<_>>();
    f.render_widget(Table::new(rows, widths).header(header), inner);
}

fn render_events(app: &App, f: &mut Frame, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let block = Block::new().borders(Borders::TOP).title(" log ");
    let inner = block.inner(top);
    f.render_widget(block, top);
    f.render_widget(
        Paragraph::new(tail(&app.logs, inner.height as usize, inner.width)),
        inner,
    );
    let block = Block::new().borders(Borders::TOP).title(" session events ");
    let inner = block.inner(bottom);
    f.render_widget(block, bottom);
    let events: Vec<&String> = app.events.iter().collect();
    f.render_widget(
        Paragraph::new(tail(&events, inner.height as usize, inner.width)),
        inner,
    );
}

fn tail<S: AsRef<str>>(lines: &[S], height: usize, width: u16) -> Vec<Line<'static>> {
    let start = lines.len().saturating_sub(height);
    lines[start..]
        .iter()
        .map(|l| Line::raw(fit(l.as_ref(), width as usize)))
        .collect()
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn render_details(app: &App, f: &mut Frame, area: Rect) {
    let Some((r, s)) = app.selected_row() else {
        return;
    };
    let rect = popup(area, 76, 16);
    let inner_w = rect.width.saturating_sub(2) as usize;
    let peer = s
        .peer_id
        .map(|p| peer_id_hex(&p))
        .unwrap_or_else(|| "(not known yet)".into());
    let kv = |k: &str, v: String| fit(&format!("{k:<12}{v}"), inner_w);
    let lines = vec![
        kv("peer ID", peer),
        kv("address", format!("{} ({})", s.far_addr, s.kind.name())),
        kv("app", s.app.as_deref().unwrap_or("-").to_owned()),
        kv(
            "state",
            format!("{} for {}", state_name(s.state), age(s.age)),
        ),
        kv(
            "RTT",
            format!("{} ± {}", s.srtt.map_or("-".into(), ms), ms(s.rttvar)),
        ),
        kv(
            "window",
            format!("cwnd {} B, {} B in flight", s.cwnd, s.in_flight),
        ),
        kv(
            "sent",
            format!(
                "{} packets, {} B, {}B/s, {} messages",
                s.tx_packets,
                s.tx_bytes,
                si(r.tx_rate),
                s.messages_out
            ),
        ),
        kv(
            "received",
            format!(
                "{} packets, {} B, {}B/s, {} messages",
                s.rx_packets,
                s.rx_bytes,
                si(r.rx_rate),
                s.messages_in
            ),
        ),
        kv(
            "loss",
            format!(
                "{} retransmitted ({:.1}%), {} lost ({:.1}%)",
                s.retransmissions,
                s.retrans_pct(),
                s.losses,
                s.loss_pct()
            ),
        ),
        kv(
            "crypto",
            format!(
                "DH group {}, HMAC {}, SSEQ {}",
                s.dh_group.map_or("-".into(), |g| g.to_string()),
                yes_no(s.hmac),
                yes_no(s.sseq)
            ),
        ),
        kv(
            "flows",
            format!(
                "{} sending, {} receiving (f shows them)",
                s.flow_count.0, s.flow_count.1
            ),
        ),
    ];
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines.into_iter().map(Line::raw).collect::<Vec<_>>())
            .block(Block::bordered().title(" session · Esc closes ")),
        rect,
    );
}

fn render_help(f: &mut Frame, area: Rect) {
    let rect = popup(area, 54, 15);
    let text = [
        "Tab / →, Shift-Tab / ←   next / previous view",
        "1-5                     jump to a view",
        "↑ ↓ PgUp PgDn Home End  select a session",
        "Enter                   details of the session",
        "f                       flows of the session",
        "s                       sort by the next column",
        "r                       reverse the sort",
        "/                       filter (peer, address, app,",
        "                        state, kind); Esc clears",
        "p / space               pause or resume updates",
        "q / Esc / Ctrl-C        quit",
    ];
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(text.iter().map(|l| Line::raw(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title(" keys · Esc closes ")),
        rect,
    );
}

/// Printable text no wider than `width` columns; cut text ends in `…`.
pub fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let total: usize = s
        .chars()
        .map(|c| {
            if unprintable(c) {
                1
            } else {
                c.width().unwrap_or(1)
            }
        })
        .sum();
    let room = if total > width {
        width.saturating_sub(1)
    } else {
        width
    };
    for c in s.chars() {
        let c = if unprintable(c) { '?' } else { c };
        let w = c.width().unwrap_or(1);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    if total > width && width > 0 {
        out.push('…');
    }
    out
}

/// Control characters, and the invisible format characters that reorder
/// or hide text (bidi overrides, zero-width marks).
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A number with an SI suffix in at most 6 characters.
pub fn si(v: f64) -> String {
    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    if v < 1000.0 {
        if v.fract() == 0.0 || v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    } else {
        let (mut x, mut unit) = (v, 0);
        let units = ["", "k", "M", "G", "T", "P"];
        while x >= 1000.0 && unit < units.len() - 1 {
            x /= 1000.0;
            unit += 1;
        }
        if x < 10.0 {
            format!("{x:.1}{}", units[unit])
        } else {
            format!("{x:.0}{}", units[unit])
        }
    }
}

fn ms(d: std::time::Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2}ms")
    } else if m < 1000.0 {
        format!("{m:.0}ms")
    } else {
        format!("{:.1}s", m / 1000.0)
    }
}

fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 100 * 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d", s / 86400)
    }
}
