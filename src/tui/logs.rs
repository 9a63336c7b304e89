//! Where log lines go while the dashboard owns the screen: a bounded ring
//! the events pane reads (and a file with `--log-file`), instead of stderr.
//!
//! `cmd::init_logging` always writes through [`LogWriter`]; it goes to
//! stderr until [`capture`] is called, and back after [`release`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// Lines kept for the events pane.
pub const MAX_LINES: usize = 500;
/// Longest line kept (bytes); longer ones are cut with a mark.
const MAX_LINE: usize = 400;

static CAPTURING: AtomicBool = AtomicBool::new(false);
static SINK: Mutex<Sink> = Mutex::new(Sink {
    lines: VecDeque::new(),
    file: None,
    generation: 0,
});

struct Sink {
    lines: VecDeque<String>,
    file: Option<File>,
    /// Bumped for every line, so readers know when to copy.
    generation: u64,
}

fn sink() -> MutexGuard<'static, Sink> {
    // A panic while holding the lock leaves plain data behind: keep using it.
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// From now on, log lines go to the pane (and `file`, appended), not stderr.
pub fn capture(file: Option<&Path>) -> io::Result<()> {
    let f = match file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    sink().file = f;
    CAPTURING.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether a dashboard owns the terminal: text meant for the screen goes
/// to its log pane instead ([`tracing::info!`]), or it would garble it.
pub fn capturing() -> bool {
    CAPTURING.load(Ordering::SeqCst)
}

/// Log lines go to stderr again.
pub fn release() {
    CAPTURING.store(false, Ordering::SeqCst);
    let mut s = sink();
    if let Some(f) = s.file.as_mut() {
        let _ = f.flush();
    }
    s.file = None;
}

/// The captured lines if they changed since `generation` (oldest first),
/// and the new generation.
pub fn lines_since(generation: u64) -> Option<(Vec<String>, u64)> {
    let s = sink();
    (s.generation != generation).then(|| (s.lines.iter().cloned().collect(), s.generation))
}

/// Adds a line as if it had been logged (tests, and events of our own).
pub fn push_line(line: &str) {
    let mut s = sink();
    push(&mut s, line);
}

fn push(s: &mut Sink, line: &str) {
    let clean = strip_ansi(line);
    let mut clean = short_time(clean.trim_end());
    if clean.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
        clean.push('…');
    }
    if s.lines.len() == MAX_LINES {
        s.lines.pop_front();
    }
    s.lines.push_back(clean);
    s.generation += 1;
}

/// `2026-11-30T20:39:14.543500Z  INFO x` → `20:39:14  INFO x`: the pane
/// is narrow and the date is today's.
fn short_time(line: &str) -> String {
    let b = line.as_bytes();
    if b.len() > 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[26] == b'Z'
        && line.is_char_boundary(19)
        && line.is_char_boundary(27)
    {
        format!("{}{}", &line[11..19], &line[27..])
    } else {
        line.to_owned()
    }
}

/// Removes terminal escape sequences (the formatter colours its output when
/// stderr is a terminal) and other control characters.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte.
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        out.push(c);
    }
    out
}

/// The `MakeWriter` `init_logging` installs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        if CAPTURING.load(Ordering::Relaxed) {
            LineWriter::Pane(Vec::new())
        } else {
            LineWriter::Stderr(io::stderr())
        }
    }
}

/// One log event's output: stderr, or buffered for the pane until dropped.
pub enum LineWriter {
    Stderr(io::Stderr),
    Pane(Vec<u8>),
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Stderr(e) => e.write(buf),
            LineWriter::Pane(v) => {
                // One event is one formatted line; bound it all the same.
                let room = (MAX_LINE * 4).saturating_sub(v.len());
                v.extend_from_slice(&buf[..buf.len().min(room)]);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stderr(e) => e.flush(),
            LineWriter::Pane(_) => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if let LineWriter::Pane(v) = self
            && !v.is_empty()
        {
            let text = String::from_utf8_lossy(v);
            let mut s = sink();
            for line in text.lines() {
                if let Some(f) = s.file.as_mut() {
                    let _ = writeln!(f, "{}", strip_ansi(line));
                }
                push(&mut s, line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_removed() {
        assert_eq!(
            strip_ansi("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m hi\x07"),
            "2026  INFO hi"
        );
        assert_eq!(strip_ansi("a\u{9b}b"), "ab");
        assert_eq!(
            short_time("2026-11-30T20:39:14.543500Z  INFO connect"),
            "20:39:14  INFO connect"
        );
        assert_eq!(short_time("plain"), "plain");
    }
}
