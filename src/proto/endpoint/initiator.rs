//! The initiator side of the handshake (spec 02 §3): opening sessions to
//! candidate addresses, RHello, IIKeying, Redirect, RIKeying, Cookie Change
//! and the opening timeout.

use super::*;

/// Plain length our IHellos are padded to (0xff padding ends the chunk
/// list): 420 bytes on the wire, so 3× covers a 1.2 kB RHello.
const IHELLO_MIN_PLAIN: usize = 413;

impl Endpoint {
    /// Starts (or reuses) a session to the endpoint named by `epd`, sending
    /// IHellos to each candidate address.
    pub fn connect(
        &mut self,
        now: Instant,
        epd: &[u8],
        candidates: &[SocketAddr],
    ) -> Result<SessionHandle, ConnectError> {
        if crypto::Epd::parse(epd).is_err() {
            return Err(ConnectError::BadEpd);
        }
        if let Some(h) = self.find_session_for_epd(epd) {
            for &c in candidates {
                self.add_candidate(now, h, c, Duration::ZERO);
            }
            return Ok(h);
        }
        if self.session_count() >= self.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        let mut tag = [0u8; TAG_LENGTH];
        self.rng.fill(&mut tag);
        let opening = Opening {
            epd: epd.to_vec(),
            tag,
            started: now,
            candidates: Vec::new(),
            keying: None,
        };
        let h = self.insert_session(now, Role::Initiator, State::IHelloSent, 0, None);
        let mode = self.config.fihello_mode;
        let s = self.session_mut(h).expect("just inserted");
        s.opening = Some(Box::new(opening));
        s.fihello_mode = mode;
        self.by_tag.insert(tag, h);
        for &c in candidates {
            self.add_candidate(now, h, c, Duration::ZERO);
        }
        self.reschedule(h);
        Ok(h)
    }

    /// Adds an address to an opening session's IHello targets, first send after `delay`.
    pub fn add_candidate(
        &mut self,
        now: Instant,
        h: SessionHandle,
        addr: SocketAddr,
        delay: Duration,
    ) {
        let Some(s) = self.session_mut(h) else { return };
        if s.state != State::IHelloSent {
            return;
        }
        let Some(o) = s.opening.as_mut() else { return };
        if o.candidates.len() >= REDIRECT_THRESHOLD || o.candidates.iter().any(|c| c.addr == addr) {
            return;
        }
        o.candidates.push(Candidate {
            addr,
            schedule: ResendSchedule::starting_at(now + delay),
        });
        self.reschedule(h);
    }

    pub(super) fn find_session_for_epd(&self, epd: &[u8]) -> Option<SessionHandle> {
        let fp = crypto::Epd::parse(epd).ok().and_then(|e| e.fingerprint());
        let mut opening = None;
        for (h, s) in self.sessions() {
            match s.state {
                State::Open => {
                    if let (Some(fp), Some(far)) = (fp, s.far.as_ref())
                        && far.fingerprint == fp
                    {
                        return Some(h);
                    }
                }
                State::IHelloSent | State::KeyingSent
                    if s.opening.as_ref().is_some_and(|o| o.epd == epd) =>
                {
                    opening = Some(h);
                }
                _ => {}
            }
        }
        opening
    }

    /// The opening session an RHello or Redirect answers, by its tag echo;
    /// anything else is counted as unmatched.
    pub(super) fn opening_for_tag(&mut self, tag: &[u8]) -> Option<SessionHandle> {
        let h = <[u8; TAG_LENGTH]>::try_from(tag)
            .ok()
            .and_then(|t| self.by_tag.get(&t).copied());
        if h.is_none() {
            self.stats.drop(DropReason::Unmatched);
        }
        h
    }

    pub(super) fn on_rhello(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        rh: &chunk::RHello<'_>,
    ) {
        let Some(h) = self.opening_for_tag(rh.tag) else {
            return;
        };
        let Ok(cert) = Certificate::parse(rh.certificate) else {
            self.stats.drop(DropReason::BadKeying);
            return;
        };
        let Some(s) = self.session(h) else { return };
        if s.state != State::IHelloSent {
            return;
        }
        let Some(epd) = s.opening.as_ref().map(|o| o.epd.clone()) else {
            return;
        };
        if !crypto::cert_selected_by(&cert, &epd) {
            self.stats.drop(DropReason::BadKeying);
            return;
        }
        let keying = match crypto::InitiatorKeying::new(
            &self.identity,
            &self.config.crypto,
            rh.certificate,
            &mut *self.rng,
        ) {
            Ok(k) => k,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        let fingerprint = cert.fingerprint();
        let local_sid = h.0.to_be_bytes();
        let datagram = match self.seal_iikeying(now, local_sid, rh.cookie, keying.skic()) {
            Some(d) => d,
            None => return,
        };
        let s = self.session_mut(h).expect("checked above");
        s.state = State::KeyingSent;
        s.far_addr = from;
        s.iface = iface;
        let mut schedule = ResendSchedule::starting_at(now);
        schedule.sent(now);
        if let Some(o) = s.opening.as_mut() {
            o.keying = Some(Keying {
                cookie: rh.cookie.to_vec(),
                responder_fingerprint: fingerprint,
                keying: Some(keying),
                datagram: datagram.clone(),
                schedule,
                cookie_changed: false,
                early: VecDeque::new(),
            });
        }
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst: from,
            bytes: datagram,
            keys_for: None,
        });
        self.reschedule(h);
    }

    pub(super) fn seal_iikeying(
        &mut self,
        now: Instant,
        isid: [u8; 4],
        cookie: &[u8],
        skic: &[u8],
    ) -> Option<Vec<u8>> {
        let cert = self.identity.certificate().to_vec();
        let ik = chunk::IIKeying {
            isid,
            cookie,
            certificate: &cert,
            skic,
            signature: SIGNATURE,
            signed: &[],
        };
        // Built through the startup queue to share sealing, then taken back.
        let dummy = SocketAddr::from(([0, 0, 0, 0], 0));
        if !self.send_startup(now, 0, dummy, [0; 4], |w| ik.encode(w)) {
            return None;
        }
        self.startup_out.pop_back().map(|d| d.bytes)
    }

    pub(super) fn on_redirect(&mut self, now: Instant, from: SocketAddr, rd: &chunk::Redirect<'_>) {
        let Some(h) = self.opening_for_tag(rd.tag) else {
            return;
        };
        let mut any = false;
        for a in rd.addresses() {
            any = true;
            // 0.0.0.0:0 is MonaServer's "that peer is gone" (spec 06).
            if a.addr.ip().is_unspecified() || a.addr.port() == 0 {
                continue;
            }
            self.add_candidate(now, h, a.addr, Duration::ZERO);
        }
        if !any {
            // An empty Redirect reveals the target's reflexive address (spec 01 §9.6).
            self.add_candidate(now, h, from, Duration::ZERO);
        }
    }

    pub(super) fn fail_opening(&mut self, h: SessionHandle, reason: OpenFailure) {
        if self.session(h).is_some_and(|s| s.is_opening()) {
            self.stats.sessions_failed += 1;
            self.events
                .push_back(Event::OpenFailed { session: h, reason });
            self.remove_session(h);
        }
    }

    pub(super) fn on_rikeying(&mut self, now: Instant, h: SessionHandle, ri: &chunk::RIKeying<'_>) {
        let s = self.session_mut(h).expect("caller checked");
        let Some(o) = s.opening.as_mut() else { return };
        let Some(k) = o.keying.as_mut() else { return };
        let Some(keying) = k.keying.take() else {
            return;
        };
        if ri.rsid == [0; 4] {
            self.fail_opening(h, OpenFailure::Keying);
            return;
        }
        if self.config.crypto_jobs > 0 {
            self.submit_initiation(h, ri.rsid, keying, ri.skrc.to_vec());
            return;
        }
        let keys = keying.finish(ri.skrc);
        self.finish_initiation(now, h, ri.rsid, keys);
    }

    /// The initiator's keys are computed (inline or by a crypto job): the
    /// session opens, or fails on a bad RIKeying.
    pub(super) fn finish_initiation(
        &mut self,
        now: Instant,
        h: SessionHandle,
        rsid: [u8; 4],
        keys: Result<crypto::SessionKeys, crypto::CryptoError>,
    ) {
        let keys = match keys {
            Ok(keys) => keys,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                self.fail_opening(h, OpenFailure::Keying);
                return;
            }
        };
        let Some(s) = self.session_mut(h) else { return };
        let Some(opening) = s.opening.take() else {
            return;
        };
        let Some(mut keying_state) = opening.keying else {
            return;
        };
        s.state = State::Open;
        s.far_sid = rsid;
        s.cipher = keys.cipher;
        s.opened_at = now;
        s.last_idle = now;
        s.last_tx = now;
        s.far = Some(FarIdentity {
            fingerprint: keying_state.responder_fingerprint,
            near_nonce: keys.near_nonce,
            far_nonce: keys.far_nonce,
            group: keys.group as u8,
            hmac_tx: keys.hmac_tx,
            hmac_rx: keys.hmac_rx,
            sseq_tx: keys.sseq_tx,
            sseq_rx: keys.sseq_rx,
        });
        let (iface, far_addr) = (s.iface, s.far_addr);
        let early = std::mem::take(&mut keying_state.early);
        if self.by_tag.get(&opening.tag) == Some(&h) {
            self.by_tag.remove(&opening.tag);
        }
        self.by_addr.insert((iface, far_addr), h);
        self.stats.sessions_opened += 1;
        self.events.push_back(Event::Opened {
            session: h,
            role: Role::Initiator,
            far_addr,
            peer_id: keying_state.responder_fingerprint,
        });
        for (iface, from, data) in early {
            self.handle_session_datagram(now, h, iface, from, &data);
        }
        // Speak at once, even with nothing to say yet: a responder keeps a
        // session half-open (and drops it after a few RTOs) until the
        // initiator's first packet in it arrives.
        if let Some(s) = self.session_mut(h) {
            s.pending.keepalive_ping = true;
        }
        self.mark_ready(h);
        self.reschedule(h);
    }

    pub(super) fn on_cookie_change(
        &mut self,
        now: Instant,
        h: SessionHandle,
        cc: &chunk::CookieChange<'_>,
    ) {
        let s = self.session_mut(h).expect("caller checked");
        let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut()) else {
            return;
        };
        if k.cookie_changed || k.cookie != cc.old_cookie {
            return;
        }
        let Some(skic) = k.keying.as_ref().map(|kk| kk.skic().to_vec()) else {
            return;
        };
        let local_sid = s.local_sid;
        let (iface, far) = (s.iface, s.far_addr);
        let new_cookie = cc.new_cookie.to_vec();
        let Some(datagram) = self.seal_iikeying(now, local_sid, &new_cookie, &skic) else {
            return;
        };
        let s = self.session_mut(h).expect("caller checked");
        let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut()) else {
            return;
        };
        k.cookie_changed = true;
        k.cookie = new_cookie;
        k.datagram = datagram.clone();
        k.schedule = ResendSchedule::starting_at(now);
        k.schedule.sent(now);
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst: far,
            bytes: datagram,
            keys_for: None,
        });
        self.reschedule(h);
    }

    pub(super) fn opening_timeout(&mut self, now: Instant, h: SessionHandle) {
        let ifaces = self.ifaces.clone();
        let s = self.session_mut(h).expect("caller checked");
        let Some(o) = s.opening.as_mut() else { return };
        if now >= o.started + crate::proto::handshake::ULTIMATE_SESSION_TIMEOUT {
            self.fail_opening(h, OpenFailure::Timeout);
            return;
        }
        if let Some(k) = o.keying.as_mut() {
            if k.schedule.is_due(now) {
                k.schedule.sent(now);
                let d = StartupDatagram {
                    iface: s.iface,
                    dst: s.far_addr,
                    bytes: k.datagram.clone(),
                    keys_for: None,
                };
                self.startup_out.push_back(d);
            }
            return;
        }
        let epd = o.epd.clone();
        let tag = o.tag;
        let mut due = Vec::new();
        for c in o.candidates.iter_mut() {
            if c.schedule.is_due(now) {
                c.schedule.sent(now);
                due.push(c.addr);
            }
        }
        for addr in due {
            let ih = chunk::IHello {
                epd: &epd,
                tag: &tag,
            };
            let v6 = addr.is_ipv6();
            for (i, &is6) in ifaces.iter().enumerate() {
                if is6 == v6 {
                    self.send_startup(now, i as u16, addr, [0; 4], |w| {
                        ih.encode(w)?;
                        // Padded so a responder that answers no more than
                        // 3× what it gets can afford its full certificate
                        // (ours, with four static keys, needs ~1.2 kB).
                        let pad = IHELLO_MIN_PLAIN.saturating_sub(w.len());
                        w.fill(0xff, pad.min(w.remaining()))
                    });
                }
            }
        }
    }
}
