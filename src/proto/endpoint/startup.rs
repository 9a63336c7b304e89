//! Startup-mode datagrams (session ID 0, the default key): sealing them,
//! the queue they wait in, the 3× budget toward an address that has not
//! proven it receives, and dispatching what arrives (IHello, RHello,
//! Redirect, IIKeying).

use super::*;

impl Endpoint {
    /// Seals a startup-mode packet (default key) and queues it.
    pub(super) fn send_startup(
        &mut self,
        now: Instant,
        iface: u16,
        dst: SocketAddr,
        far_sid: [u8; 4],
        body: impl FnOnce(&mut Writer) -> Result<(), crate::proto::wire::WireError>,
    ) -> bool {
        if self.startup_out.len() >= MAX_STARTUP_QUEUE {
            self.stats.drop(DropReason::Limit);
            return false;
        }
        let Some(bytes) = self.seal_startup(now, far_sid, true, body) else {
            return false;
        };
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst,
            bytes,
            keys_for: None,
        });
        true
    }

    /// Seals a startup-mode packet under the default key; `timestamp` false
    /// leaves the optional timestamp out (2 bytes, for the smallest answers).
    pub(super) fn seal_startup(
        &mut self,
        now: Instant,
        far_sid: [u8; 4],
        timestamp: bool,
        body: impl FnOnce(&mut Writer) -> Result<(), crate::proto::wire::WireError>,
    ) -> Option<Vec<u8>> {
        let ts = self.timestamp(now);
        let mut plain = std::mem::take(&mut self.tx_plain);
        let limit = header::MAX_STARTUP_PACKET.min(plain.len());
        let mut w = Writer::new(&mut plain[..limit]);
        let hdr = PacketHeader {
            time_critical: false,
            time_critical_reverse: false,
            mode: Mode::Startup,
            timestamp: timestamp.then_some(ts),
            timestamp_echo: None,
        };
        let ok = hdr.encode(&mut w).is_ok() && body(&mut w).is_ok();
        let n = w.len();
        let mut out = vec![0u8; MAX_DATAGRAM];
        let sealed = ok
            .then(|| {
                self.default_cipher
                    .seal(far_sid, &plain[..n], &mut out)
                    .ok()
            })
            .flatten();
        self.tx_plain = plain;
        let len = sealed?;
        out.truncate(len);
        Some(out)
    }

    /// Queues an answer to the datagram being handled, sent to an address
    /// that has not proven it receives: at most one per datagram, and only
    /// within the 3× credit and the destination prefix's byte budget.
    pub(super) fn send_answer(
        &mut self,
        iface: u16,
        dst: SocketAddr,
        bytes: Vec<u8>,
        now: Instant,
    ) -> bool {
        if self.answered {
            self.stats.drop(DropReason::Amplification);
            return false;
        }
        self.send_budgeted(iface, dst, bytes, now)
    }

    /// As [`Endpoint::send_answer`] for answers made outside the handling of
    /// their datagram (a Redirect the application decides on: one per
    /// unmatched IHello, and only the first IHello of a datagram counts).
    pub(super) fn send_budgeted(
        &mut self,
        iface: u16,
        dst: SocketAddr,
        bytes: Vec<u8>,
        now: Instant,
    ) -> bool {
        if self.startup_out.len() >= MAX_STARTUP_QUEUE {
            self.stats.drop(DropReason::Limit);
            return false;
        }
        if self.guard.spend(now, dst.ip(), bytes.len()).is_err() {
            self.stats.drop(DropReason::Amplification);
            return false;
        }
        self.answered = true;
        self.stats.unverified_tx_bytes += bytes.len() as u64;
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst,
            bytes,
            keys_for: None,
        });
        true
    }

    pub(super) fn handle_startup(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        data: &[u8],
    ) {
        // What this datagram may be answered with (3× its size).
        self.guard.received(now, from.ip(), data.len());
        let mut plain_buf = std::mem::take(&mut self.rx_plain);
        let mut cipher = std::mem::replace(&mut self.default_cipher, PacketCipher::default_key());
        match cipher.open(data, &mut plain_buf) {
            Ok(plain) => {
                self.default_cipher = cipher;
                self.handle_startup_plain(now, iface, from, plain);
            }
            Err(_) => {
                self.default_cipher = cipher;
                self.stats.drop(DropReason::Decrypt);
            }
        }
        self.rx_plain = plain_buf;
    }

    pub(super) fn handle_startup_plain(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        plain: &[u8],
    ) {
        let Ok((hdr, area)) = PacketHeader::decode(plain) else {
            self.stats.drop(DropReason::Header);
            return;
        };
        if hdr.mode != Mode::Startup {
            self.stats.drop(DropReason::Mode);
            return;
        }
        let mut seen_ihello = false;
        let mut chunks = Chunks::new(area);
        for c in chunks.by_ref() {
            match c {
                Chunk::IHello(ih) => {
                    // spec 01 §8: only the first IHello of a packet counts.
                    if !seen_ihello {
                        seen_ihello = true;
                        self.on_ihello(now, iface, from, ih.epd, ih.tag);
                    }
                }
                Chunk::RHello(rh) => self.on_rhello(now, iface, from, &rh),
                Chunk::Redirect(rd) => self.on_redirect(now, from, &rd),
                Chunk::IIKeying(ik) => self.on_iikeying(now, iface, from, &ik),
                Chunk::Malformed { .. } => self.stats.drop(DropReason::MalformedChunk),
                Chunk::Unknown { .. } => {}
                _ => self.stats.drop(DropReason::WrongState),
            }
        }
        // A chunk claiming more bytes than the packet holds ends the parse;
        // count it, or a flood of such packets is invisible in the stats.
        if chunks.ended_truncated() {
            self.stats.drop(DropReason::MalformedChunk);
        }
    }
}
