//! The stateless responder (spec 02 §3.5, §11): IHello, cookies, IIKeying,
//! the deferred Diffie-Hellman step, stale-session checks, refusals and the
//! per-source handshake rate limit.

use super::*;

impl Endpoint {
    pub(super) fn on_ihello(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        epd: &[u8],
        tag: &[u8],
    ) {
        if self.identity.selected_by(epd) {
            self.send_rhello(now, iface, from, tag);
        } else {
            self.events.push_back(Event::UnmatchedIHello {
                iface,
                from,
                epd: epd.to_vec(),
                tag: tag.to_vec(),
            });
        }
    }

    pub(super) fn send_rhello(&mut self, now: Instant, iface: u16, to: SocketAddr, tag: &[u8]) {
        let cookie = self.cookies.make(now, to);
        let cert = self.identity.certificate().to_vec();
        let rh = chunk::RHello {
            tag,
            cookie: &cookie,
            certificate: &cert,
        };
        if self.send_startup(now, iface, to, [0; 4], |w| rh.encode(w)) {
            self.stats.handshakes_answered += 1;
        }
    }

    pub(super) fn on_iikeying(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        ik: &chunk::IIKeying<'_>,
    ) {
        match self.cookies.check(now, from, ik.cookie) {
            CookieCheck::Bad => {
                self.stats.drop(DropReason::BadCookie);
                return;
            }
            CookieCheck::Mismatch => {
                let fresh = self.cookies.make(now, from);
                let cc = chunk::CookieChange {
                    old_cookie: ik.cookie,
                    new_cookie: &fresh,
                };
                if self.send_startup(now, iface, from, ik.isid, |w| cc.encode(w)) {
                    self.stats.cookie_changes += 1;
                }
                return;
            }
            CookieCheck::Ok => {}
        }
        if ik.isid == [0; 4] {
            self.stats.drop(DropReason::BadKeying);
            return;
        }
        let Ok(cert) = Certificate::parse(ik.certificate) else {
            self.stats.drop(DropReason::BadKeying);
            return;
        };
        let fingerprint = cert.fingerprint();
        let skic_digest = digest(ik.skic);
        let jobs = self.config.crypto_jobs > 0;
        if jobs
            && let crypto_jobs::Offload::Duplicate =
                self.offload_iikeying(iface, from, ik.isid, &skic_digest)
        {
            return;
        }
        // A repeated IIKeying: resend the cached RIKeying, no key work.
        if let Some(&existing) = self.by_addr.get(&(iface, from)) {
            let s = self.session(existing).expect("indexed sessions exist");
            if s.role == Role::Responder
                && s.far_sid == ik.isid
                && let Some((d, bytes)) = &s.rikeying
                && *d == skic_digest
            {
                // Empty once the initiator has spoken in session mode: it
                // has our RIKeying, so this is a stale duplicate.
                if !bytes.is_empty() {
                    let bytes = bytes.clone();
                    self.startup_out.push_back(StartupDatagram {
                        iface,
                        dst: from,
                        bytes,
                        keys_for: None,
                    });
                }
                return;
            }
            // Override (spec 02 §11): only the same certificate may replace an
            // *open* session from this address. A closing one (lingering up
            // to 19 s after the far end's Close) is no obstacle: its peer has
            // gone, and the OS may already have given its UDP port to a new
            // process with another identity, whose handshake would otherwise
            // be ignored until the linger ends.
            let far_fp = s
                .far
                .map(|f| f.fingerprint)
                .or_else(|| s.pending_keys.as_ref().map(|p| p.1));
            if s.state == State::Open && far_fp != Some(fingerprint) {
                self.stats.drop(DropReason::BadKeying);
                self.check_stale(now, existing);
                return;
            }
            self.close_with(now, existing, false, CloseReason::Superseded);
            self.by_addr.remove(&(iface, from));
        }
        // Glare (spec 02 §11): our own attempt to the same address.
        // Opening sessions are exactly those indexed by tag, so a server
        // with thousands of open sessions scans none of them here.
        let glare = self.by_tag.values().find_map(|&h| {
            let s = self.session(h)?;
            let o = s.opening.as_ref()?;
            let hit = match s.state {
                State::IHelloSent => o.candidates.iter().any(|c| c.addr == from),
                State::KeyingSent => s.far_addr == from,
                _ => false,
            };
            hit.then_some(h)
        });
        if let Some(ours) = glare {
            if crypto::near_wins_glare(self.identity.certificate(), ik.certificate) {
                return;
            }
            self.fail_opening(ours, OpenFailure::Glare);
        }
        if self.session_count() >= self.config.max_sessions {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::SessionLimit);
            return;
        }
        if !self.take_handshake_token(now, from) {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::HandshakeRate);
            return;
        }
        let plan = match crypto::plan_response(
            &self.identity,
            &self.config.crypto,
            ik.certificate,
            ik.skic,
        ) {
            Ok(p) => p,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        if jobs {
            self.submit_response(now, iface, from, ik.isid, skic_digest, fingerprint, plan);
            return;
        }
        let reuse = self.reusable_key(now, &plan);
        let fresh = plan.is_ephemeral() && reuse.is_none();
        let (skrc, pending) = match plan.build(reuse, &mut *self.rng) {
            Ok(r) => r,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        if fresh {
            self.keep_for_reuse(now, pending.key());
        }
        let Some(h) = self.answer_iikeying(now, iface, from, ik.isid, &skrc, skic_digest) else {
            return;
        };
        // The DH step waits until this RIKeying has left (poll_transmit),
        // so the initiator's key computation runs alongside ours.
        if let Some(d) = self.startup_out.back_mut() {
            d.keys_for = Some(h);
        }
        let s = self.session_mut(h).expect("just inserted");
        s.pending_keys = Some(Box::new((pending, fingerprint)));
        self.reschedule(h);
    }

    /// Opens the responder's session for a keyed IIKeying and queues its
    /// RIKeying (kept for answering resends); `None` when it cannot be sent.
    pub(super) fn answer_iikeying(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        isid: [u8; 4],
        skrc: &[u8],
        skic_digest: [u8; 32],
    ) -> Option<SessionHandle> {
        let h = self.insert_session(now, Role::Responder, State::Open, iface, Some(from));
        let rsid = h.0.to_be_bytes();
        let ri = chunk::RIKeying {
            rsid,
            skrc,
            signature: SIGNATURE,
            signed: &[],
        };
        if !self.send_startup(now, iface, from, isid, |w| ri.encode(w)) {
            self.remove_session(h);
            return None;
        }
        let cached = self
            .startup_out
            .back()
            .map(|d| d.bytes.clone())
            .unwrap_or_default();
        let s = self.session_mut(h).expect("just inserted");
        s.far_sid = isid;
        s.rikeying = Some((skic_digest, cached));
        self.by_addr.insert((iface, from), h);
        Some(h)
    }

    /// Completes a responder session's keys (the deferred DH step) and
    /// reports it open.
    pub(super) fn finish_keys(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        let Some(boxed) = s.pending_keys.take() else {
            return;
        };
        let (pending, fingerprint) = *boxed;
        let keys = match pending.finish() {
            Ok(k) => k,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                self.remove_session(h);
                return;
            }
        };
        self.install_responder_keys(h, keys, fingerprint);
    }

    /// Gives a responder session its keys and reports it open.
    pub(super) fn install_responder_keys(
        &mut self,
        h: SessionHandle,
        keys: crypto::SessionKeys,
        fingerprint: [u8; 32],
    ) {
        let Some(s) = self.session_mut(h) else { return };
        s.far = Some(FarIdentity {
            fingerprint,
            near_nonce: keys.near_nonce,
            far_nonce: keys.far_nonce,
            group: keys.group as u8,
            hmac_tx: keys.hmac_tx,
            hmac_rx: keys.hmac_rx,
            sseq_tx: keys.sseq_tx,
            sseq_rx: keys.sseq_rx,
            flash_fallback: false,
        });
        s.cipher = keys.cipher;
        let far_addr = s.far_addr;
        self.stats.sessions_opened += 1;
        self.events.push_back(Event::Opened {
            session: h,
            role: Role::Responder,
            far_addr,
            peer_id: fingerprint,
        });
        self.reschedule(h);
    }

    /// An IIKeying with a valid cookie (the sender receives at this address)
    /// but another certificate came from an open session's address. Either
    /// someone shares the address, or the session's endpoint is gone and
    /// the OS gave its UDP port to a new process (a killed client): then
    /// the session would block that address until the retransmission limit
    /// (120 s). Ask the far end with a keepalive; a live one answers and
    /// keeps its session (spec 02 §11 still ignores the stranger), a stale
    /// one is aborted so the initiator's next IIKeying (resent after 1 s)
    /// gets a session.
    pub(super) fn check_stale(&mut self, now: Instant, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        if s.stale_check.is_some() {
            return;
        }
        // Two ERTOs, so one late reply does not end a live session; at most
        // 2 s, so the initiator's IIKeying resent 3.5 s after its first
        // (spec 02 §3.1) finds the address free.
        let wait = (s.transport.rtt().erto() * 2).min(STALE_CHECK_MAX_WAIT);
        s.stale_check = Some(now + wait);
        s.pending.keepalive_ping = true;
        self.stats.stale_checks += 1;
        self.mark_ready(h);
        self.reschedule(h);
    }

    pub(super) fn refuse(&mut self, now: Instant, from: SocketAddr, reason: RefuseReason) {
        let slot = &mut self.last_refused[reason as usize];
        if slot.is_none_or(|t| now.saturating_since(t) >= Duration::from_secs(1)) {
            *slot = Some(now);
            self.events.push_back(Event::Refused { from, reason });
        }
    }

    /// Token bucket per source IP: `handshake_rate` per second, bursts of
    /// the same size.
    pub(super) fn take_handshake_token(&mut self, now: Instant, from: SocketAddr) -> bool {
        let rate = f64::from(self.config.handshake_rate);
        if rate == 0.0 {
            return true;
        }
        if self.handshake_buckets.len() >= MAX_RATE_BUCKETS {
            // Buckets idle long enough to be full again carry no state.
            let horizon = Duration::from_secs(2);
            self.handshake_buckets
                .retain(|_, (_, last)| now.saturating_since(*last) < horizon);
            if self.handshake_buckets.len() >= MAX_RATE_BUCKETS {
                return false;
            }
        }
        let (tokens, last) = self
            .handshake_buckets
            .entry(from.ip())
            .or_insert((rate, now));
        *tokens = (*tokens + now.saturating_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
