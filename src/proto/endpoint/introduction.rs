//! P2P introduction primitives (spec 02 §15): Redirect and Forwarded IHello
//! as a forwarder, and FIHello as the target.

use super::*;

impl Endpoint {
    pub fn set_fihello_mode(&mut self, h: SessionHandle, mode: FiHelloMode) {
        if let Some(s) = self.session_mut(h) {
            s.fihello_mode = mode;
        }
    }

    /// Forwarder: sends `tag`'s initiator a Redirect listing `addrs`.
    pub fn send_redirect(
        &mut self,
        now: Instant,
        iface: u16,
        to: SocketAddr,
        tag: &[u8],
        addrs: &[PeerAddress],
    ) {
        let mut list = [0u8; REDIRECT_THRESHOLD * 19];
        let mut w = Writer::new(&mut list);
        for a in addrs.iter().take(REDIRECT_THRESHOLD) {
            if a.encode(&mut w).is_err() {
                break;
            }
        }
        let n = w.len();
        let r = chunk::Redirect {
            tag,
            addresses: &list[..n],
        };
        if self.send_startup(now, iface, to, [0; 4], |w| r.encode(w)) {
            self.stats.redirects_sent += 1;
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
        let Some(s) = self.session(h) else { return };
        if !self.identity.selected_by(epd) {
            return;
        }
        match s.fihello_mode {
            FiHelloMode::Ignore => {}
            FiHelloMode::SendRHello => {
                // From every interface of the right family, to punch holes.
                let v6 = reply_to.is_ipv6();
                let ifaces: Vec<u16> = (0..self.ifaces.len() as u16)
                    .filter(|&i| self.ifaces[i as usize] == v6)
                    .collect();
                for i in ifaces {
                    self.send_rhello(now, i, reply_to, tag);
                }
            }
            FiHelloMode::SendRedirect => {
                let iface = s.iface;
                self.send_redirect(now, iface, reply_to, tag, &[]);
            }
        }
    }
}
