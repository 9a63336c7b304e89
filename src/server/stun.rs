//! The server's STUN Binding responder (RFC 5389) with RFC 5780's NAT
//! discovery attributes, on the probe sockets of `serve --probe-addr`.
//!
//! [`StunResponder::answer`] is pure: a request and the socket it arrived on
//! in, at most one reply out (which socket sends it, to where, the bytes).
//! `cmd::serve` owns the sockets.
//!
//! Never an amplifier: a reply is never longer than the request that caused
//! it. Attributes are added in order of importance while they fit
//! (XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN, MAPPED-ADDRESS,
//! FINGERPRINT); `probe-nat` pads its requests so everything fits.

use std::net::SocketAddr;

use crate::nat::stun::{
    BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Builder, CHANGE_IP, CHANGE_PORT, Message,
    attr, looks_like_stun,
};

/// The largest reply we build; a request larger than this is answered with
/// at most this many bytes.
pub const MAX_REPLY: usize = 548;

/// One reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunReplyOut {
    /// Index of the probe socket that sends it.
    pub via: usize,
    pub to: SocketAddr,
    pub len: usize,
}

/// Counters for `serve --json` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StunStats {
    pub requests: u64,
    pub answered: u64,
    pub dropped: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The set of probe sockets and their roles (RFC 5780 §3: a server with two
/// addresses A1, A2 and two ports P1, P2).
#[derive(Debug, Clone)]
pub struct StunResponder {
    addrs: Vec<SocketAddr>,
    pub stats: StunStats,
}

impl StunResponder {
    pub fn new(addrs: Vec<SocketAddr>) -> StunResponder {
        StunResponder {
            addrs,
            stats: StunStats::default(),
        }
    }

    /// The socket differing from `i` in address and/or port as asked, same family.
    fn find(&self, i: usize, change_ip: bool, change_port: bool) -> Option<usize> {
        let me = self.addrs[i];
        self.addrs.iter().position(|a| {
            a.is_ipv4() == me.is_ipv4()
                && (a.ip() != me.ip()) == change_ip
                && (a.port() != me.port()) == change_port
                && (change_ip || a.ip() == me.ip())
                && (change_port || a.port() == me.port())
        })
    }

    /// Answers a Binding request that arrived on probe socket `on` from
    /// `from`; writes the reply into `out`. Anything else gets no answer.
    pub fn answer(
        &mut self,
        on: usize,
        from: SocketAddr,
        req: &[u8],
        out: &mut [u8],
    ) -> Option<StunReplyOut> {
        if on >= self.addrs.len() || !looks_like_stun(req) {
            return None;
        }
        self.stats.requests += 1;
        self.stats.bytes_in += req.len() as u64;
        let reply = self.build(on, from, req, out);
        match &reply {
            Some(r) => {
                self.stats.answered += 1;
                self.stats.bytes_out += r.len as u64;
            }
            None => self.stats.dropped += 1,
        }
        reply
    }

    fn build(
        &self,
        on: usize,
        from: SocketAddr,
        req: &[u8],
        out: &mut [u8],
    ) -> Option<StunReplyOut> {
        let m = Message::parse(req).ok()?;
        if m.msg_type != BINDING_REQUEST {
            return None;
        }
        let budget = req.len().min(out.len()).min(MAX_REPLY);
        let out = &mut out[..budget];
        let change = m.change_request();
        let port = m.response_port();
        let (Ok(change), Ok(port)) = (change, port) else {
            return error_reply(out, m.transaction, on, from, 400);
        };
        let to = match port {
            Some(p) => SocketAddr::new(from.ip(), p),
            None => from,
        };
        let via = match self.find(on, change & CHANGE_IP != 0, change & CHANGE_PORT != 0) {
            Some(v) => v,
            // RFC 5780 §6.1: a CHANGE-REQUEST we cannot honour is an error
            // (420 would be for an unknown attribute; 400 says "cannot").
            None => return error_reply(out, m.transaction, on, from, 400),
        };
        let other = self.find(on, true, true);
        let mut w = Builder::new(out, BINDING_SUCCESS, m.transaction).ok()?;
        w.address(attr::XOR_MAPPED_ADDRESS, from).ok()?;
        // Optional attributes, most useful first, while they fit.
        if let Some(o) = other {
            let _ = w.address(attr::OTHER_ADDRESS, self.addrs[o]);
        }
        let _ = w.address(attr::RESPONSE_ORIGIN, self.addrs[via]);
        let _ = w.address(attr::MAPPED_ADDRESS, from);
        let len = w.finish_with_fingerprint().unwrap_or_else(|_| w.finish());
        Some(StunReplyOut { via, to, len })
    }
}

fn error_reply(
    out: &mut [u8],
    transaction: [u8; 12],
    on: usize,
    to: SocketAddr,
    code: u16,
) -> Option<StunReplyOut> {
    let mut w = Builder::new(out, BINDING_ERROR, transaction).ok()?;
    // RFC 5389 §15.6: class (hundreds) and number, no reason phrase (the
    // budget is tight).
    w.attr(
        attr::ERROR_CODE,
        &[0, 0, (code / 100) as u8, (code % 100) as u8],
    )
    .ok()?;
    Some(StunReplyOut {
        via: on,
        to,
        len: w.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn quad() -> StunResponder {
        StunResponder::new(vec![
            a("192.0.2.10:3478"),
            a("192.0.2.10:3479"),
            a("192.0.2.11:3478"),
            a("192.0.2.11:3479"),
        ])
    }

    fn request(change: u32, pad: usize) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        let mut w = Builder::new(&mut b, BINDING_REQUEST, [9; 12]).unwrap();
        if change != 0 {
            w.change_request(change).unwrap();
        }
        if pad > 0 {
            w.attr(attr::PADDING, &vec![0; pad]).unwrap();
        }
        let n = w.finish();
        b.truncate(n);
        b
    }

    #[test]
    fn answers_with_rfc5780_attributes_from_the_changed_socket() {
        let mut s = quad();
        let from = a("198.51.100.2:5000");
        let mut out = [0u8; 600];
        for (change, via) in [
            (0, 0),
            (CHANGE_PORT, 1),
            (CHANGE_IP, 2),
            (CHANGE_IP | CHANGE_PORT, 3),
        ] {
            let req = request(change, 100);
            let r = s.answer(0, from, &req, &mut out).unwrap();
            assert_eq!((r.via, r.to), (via, from));
            let m = Message::parse(&out[..r.len]).unwrap();
            assert_eq!(m.msg_type, BINDING_SUCCESS);
            assert_eq!(m.transaction, [9; 12]);
            assert_eq!(m.mapped().unwrap(), Some(from));
            assert_eq!(m.other_address().unwrap(), Some(a("192.0.2.11:3479")));
            assert_eq!(m.response_origin().unwrap(), Some(s.addrs[via]));
        }
    }

    #[test]
    fn never_sends_more_bytes_than_it_received() {
        let mut s = quad();
        let mut out = [0u8; 600];
        for pad in [0usize, 4, 8, 12, 20, 40, 100, 400] {
            for change in [0, CHANGE_IP | CHANGE_PORT] {
                let req = request(change, pad);
                if let Some(r) = s.answer(0, a("198.51.100.2:1"), &req, &mut out) {
                    assert!(r.len <= req.len(), "{} > {}", r.len, req.len());
                    Message::parse(&out[..r.len]).unwrap();
                }
            }
        }
        assert!(s.stats.bytes_out <= s.stats.bytes_in);
    }

    #[test]
    fn unanswerable_change_request_is_an_error_not_a_lie() {
        let mut s = StunResponder::new(vec![a("192.0.2.10:3478")]);
        let mut out = [0u8; 600];
        let req = request(CHANGE_IP, 100);
        let r = s.answer(0, a("198.51.100.2:1"), &req, &mut out).unwrap();
        let m = Message::parse(&out[..r.len]).unwrap();
        assert_eq!(m.msg_type, BINDING_ERROR);
    }

    #[test]
    fn non_requests_and_garbage_get_nothing() {
        let mut s = quad();
        let mut out = [0u8; 600];
        assert!(
            s.answer(0, a("198.51.100.2:1"), &[0u8; 3], &mut out)
                .is_none()
        );
        let mut resp = request(0, 100);
        resp[1] = 0x01; // a success response, not a request
        resp[0] = 0x01;
        assert!(s.answer(0, a("198.51.100.2:1"), &resp, &mut out).is_none());
        assert_eq!(s.stats.answered, 0);
    }
}
