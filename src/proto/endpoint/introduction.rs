//! P2P introduction primitives (spec 02 §15): Redirect and Forwarded IHello
//! as a forwarder, and FIHello as the target.

use super::*;

impl Endpoint {
    pub fn set_fihello_mode(&mut self, h: SessionHandle, mode: FiHelloMode) {
        if let Some(s) = self.session_mut(h) {
            s.fihello_mode = mode;
        }
    }

    /// Forwarder: sends `tag`'s initiator a Redirect listing `addrs`, as
    /// many of them as 3× the IHello allows (the initiator has not proven it
    /// receives). Returns whether it went out.
    pub fn send_redirect(
        &mut self,
        now: Instant,
        iface: u16,
        to: SocketAddr,
        tag: &[u8],
        addrs: &[PeerAddress],
    ) -> bool {
        let credit = self.guard.credit(now, to.ip());
        let mut n_addrs = addrs.len().min(REDIRECT_THRESHOLD);
        loop {
            let mut list = [0u8; REDIRECT_THRESHOLD * 19];
            let mut w = Writer::new(&mut list);
            for a in addrs.iter().take(n_addrs) {
                if a.encode(&mut w).is_err() {
                    break;
                }
            }
            let n = w.len();
            let r = chunk::Redirect {
                tag,
                addresses: &list[..n],
            };
            let Some(bytes) = self.seal_startup(now, [0; 4], true, |w| r.encode(w)) else {
                return false;
            };
            if bytes.len() as u64 <= credit {
                if self.send_budgeted(iface, to, bytes, now) {
                    self.stats.redirects_sent += 1;
                    return true;
                }
                return false;
            }
            if n_addrs == 0 {
                self.stats.drop(DropReason::Amplification);
                return false;
            }
            n_addrs -= 1;
        }
    }

    /// Forwarder: passes an IHello to the target over our session with it
    /// (spec 02 §15.1), so the target answers the initiator directly.
    pub fn forward_ihello(
        &mut self,
        via: SessionHandle,
        epd: &[u8],
        reply_to: SocketAddr,
        tag: &[u8],
    ) -> bool {
        let c = chunk::FIHello {
            epd,
            reply_address: PeerAddress {
                addr: reply_to,
                origin: AddressOrigin::Observed,
            },
            tag,
        };
        let mut bytes = vec![0u8; c.encoded_len()];
        let mut w = Writer::new(&mut bytes);
        if c.encode(&mut w).is_err() {
            return false;
        }
        let Some(s) = self.session_mut(via) else {
            return false;
        };
        if s.state != State::Open || !s.pending.push_fihello(bytes) {
            return false;
        }
        self.stats.forwarded_hellos += 1;
        self.mark_ready(via);
        true
    }

    pub(super) fn on_fihello(
        &mut self,
        now: Instant,
        h: SessionHandle,
        epd: &[u8],
        reply_to: SocketAddr,
        tag: &[u8],
    ) {
        tracing::trace!(session = h.0, %reply_to, "FIHello received");
        let Some(s) = self.session(h) else { return };
        if !self.identity.selected_by(epd) {
            return;
        }
        // The forwarder relays an IHello we never saw: answer it as if it
        // had come, within 3× the smallest datagram that could carry it.
        let relayed = ihello_datagram_len(epd.len(), tag.len()) as u64;
        let compact_ok = crypto::Epd::names_by_url_only(epd);
        match s.fihello_mode {
            FiHelloMode::Ignore => {}
            FiHelloMode::SendRHello => {
                // From every interface of the right family, to punch holes.
                let v6 = reply_to.is_ipv6();
                let ifaces: Vec<u16> = (0..self.ifaces.len() as u16)
                    .filter(|&i| self.ifaces[i as usize] == v6)
                    .collect();
                for i in ifaces {
                    self.guard.add_credit(
                        now,
                        reply_to.ip(),
                        guard::AMPLIFICATION_FACTOR * relayed,
                    );
                    self.answered = false;
                    if !self.send_rhello(now, i, reply_to, tag, compact_ok) {
                        // Our certificate does not fit 3x the relayed
                        // IHello (a peer ID names the full certificate).
                        // An empty Redirect does (spec 01 §9.6): it opens
                        // our NAT toward the initiator and tells it our
                        // reflexive address, so its own padded IHello,
                        // which earns the credit, gets through and is
                        // answered with the full RHello.
                        self.send_redirect(now, i, reply_to, tag, &[]);
                    }
                }
            }
            FiHelloMode::SendRedirect => {
                let iface = s.iface;
                self.guard
                    .add_credit(now, reply_to.ip(), guard::AMPLIFICATION_FACTOR * relayed);
                self.send_redirect(now, iface, reply_to, tag, &[]);
            }
        }
    }
}
