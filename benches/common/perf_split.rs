//! Whose work a server's CPU time is, from `perf record -g` call stacks
//! (`RTMFP_BENCH_PERF=1`; needs `perf` and leave to profile the PID).
//!
//! On loopback, the kernel delivers each datagram into the receiving socket
//! in the sender's context: `sendmmsg` → `__dev_queue_xmit` →
//! `__local_bh_enable_ip` → `net_rx_action` → `process_backlog` → `ip_rcv`
//! → `udp_queue_rcv_one_skb` → the receiver's wake-up. Those samples are
//! the subscribers' receive work, which a server behind a real NIC does not
//! pay (the receivers' kernels do). A sample counts as that only if its
//! stack holds BOTH the receive entry and a send system call, so the
//! server's receive of its own acks (`recvmmsg`, copy-out) stays the
//! server's. Sealing is a sample whose innermost frame is in the AES or
//! SHA-256 code (the encryption and HMAC of packets; opening acks is in it
//! too, a few % of it).
//!
//! What this miscounts: sampling is statistical (at 999 Hz, ±√n samples);
//! a packet delivered in a softirq that happened to run on the server's
//! CPU outside its send call stays "server" (conservative); the profiler's
//! own interrupts add a little system time to the run it measures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Sample counts by class.
#[derive(Debug, Default, Clone, Copy)]
pub struct Split {
    pub total: u64,
    /// AES / SHA-256 leaf frames (user space).
    pub sealing: u64,
    /// Loopback delivery into the receivers' sockets under a send call.
    pub receivers: u64,
    /// The rest of the send system call (skb, copy, loopback transmit).
    pub send_path: u64,
    /// Other kernel time (recvmmsg, epoll_wait, scheduling).
    pub kernel_other: u64,
    /// Everything else in user space (protocol, relay, runtime).
    pub user_other: u64,
}

impl Split {
    pub fn share(&self, n: u64) -> f64 {
        n as f64 / self.total.max(1) as f64
    }

    /// Shares in %, one line.
    pub fn describe(&self) -> String {
        format!(
            "{} samples: sealing {:.1}%, receivers' loopback delivery {:.1}%, rest of send {:.1}%, other kernel {:.1}%, other user {:.1}%",
            self.total,
            100.0 * self.share(self.sealing),
            100.0 * self.share(self.receivers),
            100.0 * self.share(self.send_path),
            100.0 * self.share(self.kernel_other),
            100.0 * self.share(self.user_other),
        )
    }
}

/// `perf record` on one process until [`Recording::finish`].
pub struct Recording {
    child: Child,
    file: PathBuf,
}

/// Starts profiling `pid` (call stacks, 999 Hz); None if perf is missing.
pub fn record(pid: u32, dir: &Path) -> Option<Recording> {
    // A binary replaced since the process started (cargo relinks in place)
    // leaves perf resolving the old code against the new file's symbols.
    if std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|p| p.to_string_lossy().ends_with(" (deleted)"))
    {
        eprintln!(
            "perf: process {pid}'s binary was replaced after it started; its user-space samples \
             cannot be attributed (run it from a copy): not profiling it"
        );
        return None;
    }
    let file = dir.join(format!("perf-{pid}.data"));
    let child = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-g", "-o"])
        .arg(&file)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Recording { child, file })
}

impl Recording {
    /// Stops the profiler (SIGINT: it writes its file) and classifies.
    pub fn finish(mut self) -> Option<Split> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.child.wait().ok()?;
        let out = Command::new("perf")
            .args(["script", "-F", "ip,sym", "-i"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let _ = std::fs::remove_file(&self.file);
        Some(classify(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Classifies `perf script -F ip,sym` output: one stack per blank-line
/// separated block, innermost frame first, each line `ADDR SYMBOL+OFF`.
pub fn classify(script: &str) -> Split {
    let mut s = Split::default();
    for block in script.split("\n\n") {
        let frames: Vec<(u64, &str)> = block
            .lines()
            .filter_map(|l| {
                let (addr, sym) = l.trim().split_once(' ')?;
                let addr = u64::from_str_radix(addr, 16).ok()?;
                Some((addr, sym.split("+0x").next().unwrap_or(sym)))
            })
            .collect();
        let Some(&(leaf_addr, leaf)) = frames.first() else {
            continue;
        };
        s.total += 1;
        let has = |names: &[&str]| frames.iter().any(|(_, f)| names.contains(f));
        let send = has(&["__sys_sendmmsg", "__sys_sendmsg", "udp_sendmsg"]);
        let rx = has(&["process_backlog", "__netif_receive_skb_one_core"]);
        let kernel = leaf_addr >= 0xffff_0000_0000_0000;
        if rx && send {
            s.receivers += 1;
        } else if !kernel
            && (leaf.starts_with("aes::") || leaf.starts_with("sha2::") || leaf.contains("AesEnc"))
        {
            s.sealing += 1;
        } else if kernel && send {
            s.send_path += 1;
        } else if kernel {
            s.kernel_other += 1;
        } else {
            s.user_other += 1;
        }
    }
    s
}
