//! The stateless responder (spec 02 §3.5, §11): IHello, cookies, IIKeying,
//! the deferred Diffie-Hellman step, stale-session checks, refusals and the
//! per-source handshake rate limit; answers sized and budgeted by
//! [`super::guard`], half-open sessions and over-capacity refusals.

use super::*;

/// How long an over-capacity session may stay open for the application to
/// refuse it, once confirmed.
const OVER_CAPACITY_GRACE: Duration = Duration::from_secs(3);

impl Endpoint {
    pub(super) fn on_ihello(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        epd: &[u8],
        tag: &[u8],
    ) {
        tracing::trace!(%from, "IHello received");
        if self.identity.selected_by(epd) {
            let compact_ok = crypto::Epd::names_by_url_only(epd);
            self.send_rhello(now, iface, from, tag, compact_ok);
        } else {
            self.events.push_back(Event::UnmatchedIHello {
                iface,
                from,
                epd: epd.to_vec(),
                tag: tag.to_vec(),
            });
        }
    }

    /// Answers an IHello with the largest RHello that the 3× rule allows:
    /// our own certificate, else (`compact_ok`) the compact one with every
    /// group, with group 2 only, and without the timestamp; nothing if even
    /// that is too big. Under a byte-budget squeeze, the compact form first.
    pub(super) fn send_rhello(
        &mut self,
        now: Instant,
        iface: u16,
        to: SocketAddr,
        tag: &[u8],
        compact_ok: bool,
    ) -> bool {
        let credit = self.guard.credit(now, to.ip());
        let squeezed = compact_ok && self.guard.under_pressure(now, to.ip());
        let full = self.identity.certificate().to_vec();
        let mut forms: Vec<(Vec<u8>, bool, bool)> = Vec::with_capacity(4);
        if !squeezed {
            forms.push((full, false, true));
        }
        if compact_ok {
            forms.push((self.identity.compact_certificate(true), true, true));
            forms.push((self.identity.compact_certificate(false), true, true));
            forms.push((self.identity.compact_certificate(false), true, false));
        }
        for (cert, compact, timestamp) in forms {
            let cookie = self.cookies.make_for(now, to, compact);
            let rh = chunk::RHello {
                tag,
                cookie: &cookie,
                certificate: &cert,
            };
            let Some(bytes) = self.seal_startup(now, [0; 4], timestamp, |w| rh.encode(w)) else {
                continue;
            };
            if bytes.len() as u64 > credit {
                continue;
            }
            if self.send_answer(iface, to, bytes, now) {
                self.stats.handshakes_answered += 1;
                return true;
            }
            return false;
        }
        self.stats.drop(DropReason::Amplification);
        false
    }

    pub(super) fn on_iikeying(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        ik: &chunk::IIKeying<'_>,
    ) {
        tracing::trace!(%from, "IIKeying received");
        match self.cookies.check(now, from, ik.cookie) {
            CookieCheck::Bad => {
                self.stats.drop(DropReason::BadCookie);
                return;
            }
            CookieCheck::Mismatch => {
                // The new address has not proven it receives: a Cookie
                // Change is an answer like an RHello (3×, one per datagram).
                let compact = CookieJar::is_compact(ik.cookie);
                let fresh = self.cookies.make_for(now, from, compact);
                let cc = chunk::CookieChange {
                    old_cookie: ik.cookie,
                    new_cookie: &fresh,
                };
                if let Some(bytes) = self.seal_startup(now, ik.isid, true, |w| cc.encode(w))
                    && self.send_answer(iface, from, bytes, now)
                {
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
        // One answer per datagram, even to an address that proved it
        // receives: a datagram packing many IIKeyings gets one RIKeying.
        if self.answered {
            self.stats.drop(DropReason::Amplification);
            return;
        }
        let compact = CookieJar::is_compact(ik.cookie);
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
                    self.answered = true;
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
        if self.session_table_full() {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::SessionLimit);
            return;
        }
        if !self.take_handshake_token(now, from) {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::HandshakeRate);
            return;
        }
        let room = self.guard.half_open_available(from.ip())
            || (self.evict_half_open(now, from.ip()) && self.guard.half_open_available(from.ip()));
        if !room {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::HalfOpen);
            return;
        }
        // Priced and admitted before any exponentiation (key generation
        // and the shared secret come later, inline or on the crypto pool).
        let cost = crypto::skic_group(ik.skic).map_or(1, keying_cost);
        if self.guard.take_keying(now, from.ip(), cost).is_err() {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::KeyingBudget);
            return;
        }
        let plan = match crypto::plan_response(
            &self.identity,
            &self.config.crypto,
            ik.certificate,
            ik.skic,
        ) {
            Ok(p) => p.with_key_in_skrc(compact),
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        if jobs {
            self.answered = true;
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
        // Half-open until the initiator's first packet; past --max-sessions
        // it is admitted only to be told the server is full.
        let full = self.confirmed_session_count() >= self.config.max_sessions;
        if self.guard.open_half(from.ip()).is_err()
            && !(self.evict_half_open(now, from.ip()) && self.guard.open_half(from.ip()).is_ok())
        {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::HalfOpen);
            return None;
        }
        if full {
            self.refuse(now, from, RefuseReason::SessionLimit);
        }
        let h = self.insert_session(now, Role::Responder, State::Open, iface, Some(from));
        self.guard.note_half(from.ip(), h);
        let rsid = h.0.to_be_bytes();
        let ri = chunk::RIKeying {
            rsid,
            skrc,
            signature: SIGNATURE,
            signed: &[],
        };
        let half_open = (now + self.config.guard.half_open_lifetime, from.ip());
        let s = self.session_mut(h).expect("just inserted");
        s.half_open = Some(half_open);
        if full {
            s.over_capacity = Some(half_open.0 + OVER_CAPACITY_GRACE);
        }
        if !self.send_startup(now, iface, from, isid, |w| ri.encode(w)) {
            self.remove_session(h);
            return None;
        }
        self.answered = true;
        tracing::trace!(session = h.0, to = %from, "RIKeying sent");
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
            flash_era: false,
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

    /// The session table holds confirmed sessions up to `max_sessions`,
    /// and as many again half-open or over-capacity ones, at most.
    pub(super) fn session_table_full(&self) -> bool {
        self.session_count() >= self.config.max_sessions.saturating_mul(2).max(16)
    }

    /// A half-open session's first authentic packet from the initiator:
    /// it is a session now, and counts against `max_sessions`.
    pub(super) fn confirm(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        let Some((_, ip)) = s.half_open.take() else {
            return;
        };
        let over = s.over_capacity.is_some();
        if over {
            // From now on it only waits for the application's refusal.
            s.over_capacity = Some(s.last_rx + OVER_CAPACITY_GRACE);
        }
        self.guard.close_half(ip);
        if over {
            self.over_capacity += 1;
        }
        self.reschedule(h);
    }

    /// When `ip`'s prefix has all its half-open slots taken, ends the
    /// oldest of those sessions to make room: a flood from a prefix then
    /// only recycles its own slots, and a client sharing the prefix gets in
    /// as soon as it asks, not after the flood's sessions expire.
    pub(super) fn evict_half_open(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        while let Some(h) = self.guard.oldest_half_open(ip) {
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            let Some((deadline, _)) = s.half_open.as_mut() else {
                continue;
            };
            *deadline = now;
            // Counted with the expired ones (stats.half_open_expired), but
            // ended silently: under a flood a Close Ack per eviction would
            // double what each IIKeying gets back.
            if self.expire_unconfirmed(now, h) {
                if let Some(s) = self.session_mut(h) {
                    s.pending.close_ack = false;
                }
                return true;
            }
        }
        false
    }

    /// Ends a half-open session whose initiator never spoke, or an
    /// over-capacity one the application did not refuse in time. Its
    /// address proved it receives (the cookie), so a keyed session is
    /// ended with a lone Close Ack; one still without keys silently.
    pub(super) fn expire_unconfirmed(&mut self, now: Instant, h: SessionHandle) -> bool {
        let Some(s) = self.session_mut(h) else {
            return false;
        };
        let half = s.half_open.is_some_and(|(t, _)| now >= t);
        let over = s.over_capacity.is_some_and(|t| now >= t);
        if !(half || over) {
            return false;
        }
        let had_half = s.half_open.take();
        let was_over = s.over_capacity.take().is_some();
        let reported = s.pending_keys.is_none();
        s.pending_keys = None;
        if let Some((_, ip)) = had_half {
            self.guard.close_half(ip);
            self.stats.half_open_expired += 1;
        } else if was_over {
            self.over_capacity -= 1;
        }
        if reported {
            self.abort_session(h, true, Some(CloseReason::Timeout));
            self.mark_ready(h);
        } else {
            self.remove_session(h);
        }
        true
    }

    /// Token bucket per source prefix: `handshake_rate` per second, bursts
    /// of the same size.
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
        let prefix = self.guard.prefix(from.ip());
        let (tokens, last) = self.handshake_buckets.entry(prefix).or_insert((rate, now));
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
