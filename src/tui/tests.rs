//! Render snapshots of every view with known figures (insta + ratatui's
//! TestBackend), and the state changes keys make.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{Action, App, Column, View};
use super::render::{fit, render, si};
use crate::flash::metadata::TcMetadata;
use crate::net::snapshot::{LocalStream, PeerKind, SessionRow, Snapshot, StreamRow};
use crate::proto::flow::{FlowMeta, FlowStats, Priority};
use crate::proto::session::State;
use crate::proto::stats::DropReason;
use crate::server::ServerStats;

fn row(i: u32) -> SessionRow {
    let mut peer = [0u8; 32];
    for (k, b) in peer.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(k as u8);
    }
    peer[0] = (i >> 8) as u8;
    peer[1] = i as u8;
    let addr: SocketAddr = format!("192.0.2.{}:{}", i % 250 + 1, 40000 + i % 20000)
        .parse()
        .unwrap();
    SessionRow {
        handle: i,
        peer_id: Some(peer),
        far_addr: addr,
        kind: if i % 7 == 3 {
            PeerKind::Server
        } else {
            PeerKind::Client
        },
        app: Some(Arc::from(if i.is_multiple_of(2) {
            "live"
        } else {
            "vod/app"
        })),
        state: if i % 11 == 5 {
            State::KeyingSent
        } else {
            State::Open
        },
        age: Duration::from_secs(u64::from(i) * 13 % 5000),
        srtt: (i % 11 != 5).then(|| Duration::from_micros(u64::from(i) * 997 % 400_000 + 150)),
        rttvar: Duration::from_micros(u64::from(i) * 331 % 90_000),
        cwnd: 4380 + (i as usize * 1460) % 60_000,
        in_flight: (i as usize * 733) % 9000,
        tx_bytes: u64::from(i) * 1000,
        rx_bytes: u64::from(i) * 700,
        tx_packets: u64::from(i) * 10,
        rx_packets: u64::from(i) * 9,
        data_packets_out: 200,
        retransmissions: u64::from(i % 9),
        losses: u64::from(i % 4),
        messages_in: u64::from(i) * 3,
        messages_out: u64::from(i) * 4,
        dh_group: Some(if i.is_multiple_of(3) { 2 } else { 14 }),
        hmac: (i.is_multiple_of(2), i.is_multiple_of(2)),
        sseq: (false, i.is_multiple_of(5)),
        flow_count: (2, 3),
        flows: vec![
            FlowStats {
                id: 1,
                sending: true,
                priority: Some(Priority::Immediate),
                metadata: FlowMeta::new(&TcMetadata::new(0).to_bytes()),
                return_for: None,
                sequence: 12,
                bytes: 1_234,
                messages: 11,
                abandoned: 0,
                in_flight_or_buffered: 0,
                queued_or_capacity: 0,
                window: 65536,
                exception: None,
            },
            FlowStats {
                id: 2,
                sending: true,
                priority: Some(Priority::Priority),
                metadata: FlowMeta::new(&TcMetadata::new(1).to_bytes()),
                return_for: Some(1),
                sequence: 4_000,
                bytes: 2_500_000,
                messages: 3_999,
                abandoned: 17,
                in_flight_or_buffered: 8_760,
                queued_or_capacity: 30_000,
                window: 131_072,
                exception: None,
            },
            FlowStats {
                id: 1,
                sending: false,
                priority: None,
                metadata: FlowMeta::new(&TcMetadata::new(0).to_bytes()),
                return_for: Some(1),
                sequence: 7,
                bytes: 900,
                messages: 6,
                abandoned: 0,
                in_flight_or_buffered: 120,
                queued_or_capacity: 65536,
                window: 65536,
                exception: None,
            },
            FlowStats {
                id: 3,
                sending: false,
                priority: None,
                metadata: FlowMeta::new(b"GR\x1c\x00 a long NetGroup name"),
                return_for: None,
                sequence: 0,
                bytes: 0,
                messages: 0,
                abandoned: 0,
                in_flight_or_buffered: 0,
                queued_or_capacity: 65536,
                window: 0,
                exception: Some(3),
            },
            FlowStats {
                id: 4,
                sending: false,
                priority: None,
                metadata: FlowMeta::new(&TcMetadata::new(2_000_001).to_bytes()),
                return_for: Some(2),
                sequence: 30,
                bytes: 40_960,
                messages: 30,
                abandoned: 0,
                in_flight_or_buffered: 0,
                queued_or_capacity: 65536,
                window: 65536,
                exception: None,
            },
        ],
    }
}

fn snapshot(n: u32, secs: u64) -> Snapshot {
    let mut s = Snapshot {
        uptime: Duration::from_secs(secs),
        sessions: (0..n).map(row).collect(),
        server: Some(ServerStats {
            introductions: 4 * secs,
            ..ServerStats::default()
        }),
        ..Snapshot::default()
    };
    // Grows with time so the charts have a shape.
    s.endpoint.rx_datagrams = secs * secs * 40;
    s.endpoint.tx_datagrams = secs * secs * 35;
    s.endpoint.rx_bytes = secs * secs * 40_000;
    s.endpoint.tx_bytes = secs * secs * 52_000;
    s.endpoint.sessions_opened = secs * 3;
    s.endpoint.handshakes_answered = secs * 3;
    s.endpoint.drops[DropReason::Decrypt as usize] = secs * 2;
    s.endpoint.drops[DropReason::UnknownSession as usize] = secs;
    s.endpoint.drops[DropReason::Limit as usize] = 1234567;
    s.retransmissions = secs * 5;
    s
}

/// An app fed `history` seconds of snapshots of `n` sessions.
fn app(n: u32, history: u64) -> App {
    let mut a = App::new("rtmfp serve", 1);
    for t in 0..=history {
        a.update(0, Arc::new(snapshot(n, t)));
    }
    a.set_logs(vec![
        "20:39:14  INFO listening on 192.0.2.1:1935".into(),
        "20:39:15  INFO connect from 192.0.2.7:40007: app \"live\", peer 0007…".into(),
    ]);
    a
}

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) -> Action {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE), 10)
}

#[test]
fn empty_at_80x24() {
    let a = App::new("rtmfp serve", 1);
    insta::assert_snapshot!(draw(&a, 80, 24));
}

#[test]
fn sessions_at_80x24() {
    insta::assert_snapshot!(draw(&app(5, 3), 80, 24));
}

#[test]
fn sessions_at_160x40() {
    insta::assert_snapshot!(draw(&app(5, 3), 160, 40));
}

#[test]
fn thousand_sessions_sorted_by_rtt_and_scrolled() {
    let mut a = app(1000, 2);
    a.sort_by(Column::Rtt, true);
    key(&mut a, KeyCode::Home);
    for _ in 0..30 {
        key(&mut a, KeyCode::Down);
    }
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("sessions 1000/1000"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn hostile_names_are_cleaned_and_cut() {
    let mut s = snapshot(3, 5);
    s.sessions[0].app = Some(Arc::from("\x1b[31mred\x07\u{0}bell"));
    s.sessions[1].app = Some(Arc::from("x".repeat(10_000).as_str()));
    s.sessions[2].app = Some(Arc::from("直播直播直播直播"));
    s.streams = vec![
        StreamRow {
            name: Arc::from("a\nb\rc\u{202e}d"),
            publisher: s.sessions[0].peer_id,
            subscribers: 3,
            bitrate: 2_500_000,
            local: None,
        },
        StreamRow {
            name: Arc::from("s".repeat(5000).as_str()),
            publisher: None,
            subscribers: 0,
            bitrate: 0,
            local: None,
        },
    ];
    let mut a = App::new("rtmfp serve", 1);
    a.update(0, Arc::new(s));
    a.sort_by(Column::Age, false);
    let sessions = draw(&a, 120, 12);
    assert!(!sessions.contains('\x1b') && !sessions.contains('\x07'));
    insta::assert_snapshot!("hostile_sessions", sessions);
    a.view = View::Streams;
    insta::assert_snapshot!("hostile_streams", draw(&a, 80, 10));
}

#[test]
fn tiny_terminals_do_not_panic() {
    let a = app(20, 2);
    for (w, h) in [(0, 0), (1, 1), (10, 3), (39, 8), (40, 7)] {
        let s = draw(&a, w, h);
        if w >= 10 {
            assert!(s.contains("too"), "{w}x{h}: {s}");
        }
    }
    insta::assert_snapshot!(draw(&a, 40, 8));
    let mut a = a;
    for v in View::ALL {
        a.view = v;
        draw(&a, 40, 8);
        draw(&a, 41, 9);
    }
}

#[test]
fn flows_view() {
    let mut a = app(3, 2);
    key(&mut a, KeyCode::Char('f'));
    assert_eq!(a.view, View::Flows);
    insta::assert_snapshot!(draw(&a, 80, 24));
}

#[test]
fn flows_not_listed_yet_are_counted() {
    // Past FLOW_ROWS_FOR_ALL_UP_TO sessions, a snapshot lists only the
    // selected session's flows; the others show their counts.
    let mut a = App::new(String::from("rtmfp serve"), 1);
    let mut s = snapshot(3, 2);
    for r in &mut s.sessions {
        r.flows.clear();
    }
    let s = Arc::new(s);
    a.update(0, Arc::clone(&s));
    assert_eq!(s.focus.get(), Some(a.selected_row().unwrap().1.handle));
    key(&mut a, KeyCode::Char('f'));
    let screen = draw(&a, 80, 24);
    assert!(
        screen.contains("2 sending and 3 receiving flows: listed from the next refresh"),
        "{screen}"
    );
}

#[test]
fn flows_view_wide() {
    let mut a = app(3, 2);
    key(&mut a, KeyCode::Char('f'));
    insta::assert_snapshot!(draw(&a, 120, 16));
}

#[test]
fn packets_view() {
    let mut a = app(3, 90);
    a.view = View::Packets;
    insta::assert_snapshot!(draw(&a, 80, 24));
    insta::assert_snapshot!("packets_view_large", draw(&a, 140, 40));
}

#[test]
fn streams_view_empty() {
    let mut a = app(3, 2);
    a.view = View::Streams;
    insta::assert_snapshot!(draw(&a, 80, 24));
}

#[test]
fn streams_view_of_a_publisher_and_a_player() {
    let mut a = App::new(String::from("rtmfp publish"), 1);
    let mut s = snapshot(1, 4);
    s.streams = vec![
        StreamRow {
            name: Arc::from("cam"),
            bitrate: 812_000,
            local: Some(LocalStream {
                publishing: true,
                audio: 187,
                video: 100,
                data: 1,
                bytes: 406_000,
                last_timestamp: 4000,
            }),
            ..StreamRow::default()
        },
        StreamRow {
            name: Arc::from("cam?asis"),
            bitrate: 0,
            local: Some(LocalStream {
                publishing: false,
                ..LocalStream::default()
            }),
            ..StreamRow::default()
        },
    ];
    a.update(0, Arc::new(s));
    a.view = View::Streams;
    insta::assert_snapshot!(draw(&a, 80, 12));
}

#[test]
fn events_view() {
    let mut a = app(3, 2);
    let mut fewer = snapshot(2, 3);
    fewer.sessions.remove(0);
    a.update(0, Arc::new(fewer));
    a.view = View::Events;
    let s = draw(&a, 80, 24);
    assert!(s.contains("session 0 gone"), "{s}");
    insta::assert_snapshot!(s);
}

#[test]
fn help_and_details_popups() {
    let mut a = app(3, 2);
    key(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!("help_popup", draw(&a, 80, 24));
    key(&mut a, KeyCode::Esc);
    assert!(!a.help);
    key(&mut a, KeyCode::Enter);
    assert!(a.details);
    insta::assert_snapshot!("details_popup", draw(&a, 80, 24));
    key(&mut a, KeyCode::Esc);
    assert!(!a.details);
    assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
}

#[test]
fn filter_by_typing() {
    let mut a = app(40, 1);
    key(&mut a, KeyCode::Char('/'));
    assert!(a.filtering);
    for c in "vod".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    assert_eq!(a.rows.len(), 20);
    // Typing while filtering is text, not commands.
    key(&mut a, KeyCode::Char('q'));
    assert_eq!(a.filter, "vodq");
    assert!(a.rows.is_empty());
    key(&mut a, KeyCode::Backspace);
    key(&mut a, KeyCode::Enter);
    assert!(!a.filtering);
    assert_eq!(a.rows.len(), 20);
    let s = draw(&a, 80, 24);
    assert!(s.contains("sessions 20/40"), "{s}");
    a.set_filter("192.0.2.7:");
    assert_eq!(a.rows.len(), 1);
    key(&mut a, KeyCode::Char('/'));
    key(&mut a, KeyCode::Esc);
    assert!(a.filter.is_empty() && a.rows.len() == 40);
}

#[test]
fn every_column_sorts_and_selection_follows_the_session() {
    let mut a = app(50, 1);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    let chosen = a.selected_row().unwrap().1.handle;
    for _ in 0..Column::ALL.len() {
        key(&mut a, KeyCode::Char('s'));
        assert_eq!(a.selected_row().unwrap().1.handle, chosen, "{:?}", a.sort);
        let rtts: Vec<_> = a.rows.iter().map(|r| a.session(r).srtt).collect();
        if a.sort == Column::Rtt {
            assert!(rtts.windows(2).all(|w| w[0] >= w[1]), "largest RTT first");
        }
    }
    key(&mut a, KeyCode::Char('r'));
    assert_eq!(a.selected_row().unwrap().1.handle, chosen);
}

#[test]
fn pause_freezes_the_figures() {
    let mut a = app(2, 1);
    key(&mut a, KeyCode::Char('p'));
    a.update(0, Arc::new(snapshot(9, 5)));
    assert_eq!(a.totals.sessions, 2);
    key(&mut a, KeyCode::Char('p'));
    a.update(0, Arc::new(snapshot(9, 6)));
    assert_eq!(a.totals.sessions, 9);
}

#[test]
fn rates_are_per_second() {
    let mut a = App::new("t", 1);
    a.update(0, Arc::new(snapshot(3, 10)));
    a.update(0, Arc::new(snapshot(3, 12)));
    let p = *a.history.back().unwrap();
    // rx datagrams: 40·t², so (40·144 − 40·100) / 2 s.
    assert_eq!(p.rx_pps, 880.0);
    let mut s = snapshot(3, 14);
    s.sessions[1].tx_bytes += 4000;
    a.update(0, Arc::new(s));
    let r = a.rows.iter().find(|r| a.session(r).handle == 1).unwrap();
    assert_eq!(r.tx_rate, 2000.0);
}

#[test]
fn number_and_text_formatting() {
    assert_eq!(si(0.0), "0");
    assert_eq!(si(12.5), "12.5");
    assert_eq!(si(999.0), "999");
    assert_eq!(si(1234.0), "1.2k");
    assert_eq!(si(45_678_000.0), "46M");
    assert_eq!(si(f64::NAN), "0");
    assert_eq!(fit("abcdef", 4), "abc…");
    assert_eq!(fit("abc", 3), "abc");
    assert_eq!(fit("a\x1bb", 5), "a?b");
    assert_eq!(fit("直播直播", 5), "直播…");
    assert_eq!(fit("abc", 0), "");
    assert_eq!(fit("a\u{202e}b", 5), "a?b");
}
