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
            redirects: Vec::new(),
            rhello_from: None,
            groups: None,
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

    /// Prefers `groups` (in that order, among those the endpoint is
    /// configured with) for an opening session's keying; peer sessions use
    /// it so they key in a cheaper group than a server session.
    pub fn set_opening_groups(&mut self, h: SessionHandle, groups: &[crypto::DhGroup]) {
        let allowed = &self.config.crypto.groups;
        let order: Vec<crypto::DhGroup> = groups
            .iter()
            .copied()
            .filter(|g| allowed.contains(g))
            .chain(allowed.iter().copied().filter(|g| !groups.contains(g)))
            .collect();
        if let Some(o) = self.session_mut(h).and_then(|s| s.opening.as_mut()) {
            o.groups = Some(order);
        }
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
        tracing::trace!(session = h.0, %from, "RHello received");
        let Ok(cert) = Certificate::parse(rh.certificate) else {
            self.stats.drop(DropReason::BadKeying);
            return;
        };
        let Some(s) = self.session(h) else { return };
        if s.state != State::IHelloSent {
            return;
        }
        let Some((epd, groups)) = s
            .opening
            .as_ref()
            .map(|o| (o.epd.clone(), o.groups.clone()))
        else {
            return;
        };
        if !crypto::cert_selected_by(&cert, &epd) {
            self.stats.drop(DropReason::BadKeying);
            return;
        }
        // A Flash-era server (Cirrus lineage: Cumulus, MonaServer) keys with
        // group 2 whatever it advertises and reads only Flash Player's
        // single-key certificate (spec 06): answer it as Flash Player would.
        let flash = self
            .flash_fallback
            .as_ref()
            .is_some_and(|f| (f.for_servers && cert.is_flash_era()) || cert.is_flash_player_peer());
        let preferred;
        let (identity, settings) = match (&self.flash_fallback, flash, groups) {
            (Some(f), true, _) => (&f.identity, &f.crypto),
            (_, _, Some(groups)) => {
                preferred = CryptoSettings {
                    groups,
                    ..self.config.crypto.clone()
                };
                (&self.identity, &preferred)
            }
            _ => (&self.identity, &self.config.crypto),
        };
        let keying = match crypto::InitiatorKeying::new(
            identity,
            settings,
            rh.certificate,
            &mut *self.rng,
        ) {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(%from, error = ?e, "RHello: cannot key with its certificate");
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        let near_cert = identity.certificate().to_vec();
        tracing::debug!(
            session = h.0,
            %from,
            group = keying.group() as u8,
            flash_era = flash,
            "RHello received; sending IIKeying"
        );
        let fingerprint = cert.fingerprint();
        let local_sid = h.0.to_be_bytes();
        let datagram =
            match self.seal_iikeying(now, local_sid, rh.cookie, keying.skic(), &near_cert) {
                Some(d) => d,
                None => return,
            };
        let precompute = self.config.crypto_jobs == 0 && keying.can_precompute();
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
                flash_fallback: flash,
                flash_era: cert.is_flash_era(),
                early: VecDeque::new(),
            });
            o.rhello_from = Some(from);
        }
        // Inline keying (peers, single clients): once this IIKeying has left,
        // the secret with the responder's static key is computed while the
        // RIKeying is on its way. Pooled keying (load runs) keeps DH off
        // this thread.
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst: from,
            bytes: datagram,
            keys_for: precompute.then_some(h),
        });
        self.reschedule(h);
    }

    pub(super) fn seal_iikeying(
        &mut self,
        now: Instant,
        isid: [u8; 4],
        cookie: &[u8],
        skic: &[u8],
        cert: &[u8],
    ) -> Option<Vec<u8>> {
        let cert = cert.to_vec();
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
        if self.session(h).is_none_or(|s| s.state != State::IHelloSent) {
            return;
        }
        let mut listed = Vec::new();
        let mut any = false;
        let mut gone = false;
        for a in rd.addresses().take(REDIRECT_THRESHOLD) {
            any = true;
            tracing::debug!(session = h.0, %from, to = %a.addr, "Redirect received");
            if let Some(o) = self.session_mut(h).and_then(|s| s.opening.as_mut())
                && o.redirects.len() < REDIRECT_THRESHOLD
                && !o.redirects.contains(&a.addr)
            {
                o.redirects.push(a.addr);
            }
            // 0.0.0.0:0 is MonaServer's "that peer is gone" (spec 06).
            if a.addr.ip().is_unspecified() || a.addr.port() == 0 {
                gone = true;
                continue;
            }
            listed.push(a);
            self.add_candidate(now, h, a.addr, Duration::ZERO);
        }
        if !any {
            // An empty Redirect reveals the target's reflexive address (spec 01 §9.6).
            self.add_candidate(now, h, from, Duration::ZERO);
        }
        self.events.push_back(Event::Redirected {
            session: h,
            from,
            gone: gone && listed.is_empty(),
            addresses: listed,
        });
    }

    pub(super) fn fail_opening(&mut self, h: SessionHandle, reason: OpenFailure) {
        if self.session(h).is_some_and(|s| s.is_opening()) {
            tracing::debug!(session = h.0, ?reason, "session opening failed");
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
        tracing::trace!(session = h.0, "RIKeying received");
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
            Err(e) => {
                tracing::debug!(session = h.0, error = ?e, "RIKeying: keying failed");
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
        s.keys_handed = false;
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
            flash_fallback: keying_state.flash_fallback,
            flash_era: keying_state.flash_era,
        });
        let (iface, far_addr) = (s.iface, s.far_addr);
        tracing::debug!(
            session = h.0,
            %far_addr,
            group = keys.group as u8,
            hmac = keys.hmac_tx,
            sseq = keys.sseq_tx,
            "RIKeying received; session open"
        );
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
        let flash = k.flash_fallback;
        let local_sid = s.local_sid;
        let (iface, far) = (s.iface, s.far_addr);
        let new_cookie = cc.new_cookie.to_vec();
        let cert = match (&self.flash_fallback, flash) {
            (Some(f), true) => f.identity.certificate().to_vec(),
            _ => self.identity.certificate().to_vec(),
        };
        tracing::debug!(session = h.0, "Cookie Change received; resending IIKeying");
        let Some(datagram) = self.seal_iikeying(now, local_sid, &new_cookie, &skic, &cert) else {
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
        let handed = std::mem::take(&mut s.keys_handed);
        let Some(o) = s.opening.as_mut() else { return };
        if now >= o.started + crate::proto::handshake::ULTIMATE_SESSION_TIMEOUT {
            self.fail_opening(h, OpenFailure::Timeout);
            return;
        }
        if let Some(k) = o.keying.as_mut() {
            if handed && let Some(kk) = k.keying.as_mut() {
                kk.precompute();
                tracing::trace!(session = h.0, "DH secret precomputed");
            }
            if k.schedule.is_due(now) {
                k.schedule.sent(now);
                tracing::debug!(session = h.0, to = %s.far_addr, "no RIKeying yet; resending IIKeying");
                let d = StartupDatagram {
                    iface: s.iface,
                    dst: s.far_addr,
                    bytes: k.datagram.clone(),
                    keys_for: None,
                };
                self.stats.keying_resends += 1;
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
            tracing::trace!(session = h.0, to = %addr, "sending IHello");
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

    /// The network said `addr` (ICMP port or host unreachable; the address
    /// that reported it, port 0 when unknown) cannot be reached. Opening
    /// sessions drop the candidates at that IP, and give up with
    /// [`OpenFailure::Unreachable`] once none is left: the answer a closed
    /// port gives at once, instead of a silent timeout.
    ///
    /// Sessions opened by peer ID are left alone: while two peers punch
    /// holes, the far NAT answers the first packets with ICMP until the
    /// peer's own packets open its mapping, so an ICMP there says nothing
    /// about whether the peer can be reached.
    pub fn handle_unreachable(&mut self, _now: Instant, addr: SocketAddr) {
        let hit =
            |a: &SocketAddr| a.ip() == addr.ip() && (addr.port() == 0 || a.port() == addr.port());
        let handles: Vec<SessionHandle> = self
            .sessions()
            .filter(|(_, s)| {
                s.opening
                    .as_ref()
                    .is_some_and(|o| !crypto::Epd::names_by_fingerprint(&o.epd))
            })
            .map(|(h, _)| h)
            .collect();
        for h in handles {
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            let gone = match s.state {
                State::KeyingSent => hit(&s.far_addr),
                State::IHelloSent => match s.opening.as_mut() {
                    Some(o) if o.candidates.iter().any(|c| hit(&c.addr)) => {
                        o.candidates.retain(|c| !hit(&c.addr));
                        o.candidates.is_empty()
                    }
                    _ => false,
                },
                _ => false,
            };
            if gone {
                tracing::debug!(session = h.0, %addr, "opening session: destination unreachable");
                self.fail_opening(h, OpenFailure::Unreachable);
            }
        }
    }

    /// Opens sessions to Flash-era servers (Cirrus lineage, recognised by
    /// their certificate's layout) with `identity`, Flash Player's
    /// single-key group-2 certificate, and `crypto`: those servers key with
    /// group 2 whatever they advertise and misread any other certificate.
    /// Peers that present Flash Player's own certificate (Flash, librtmfp)
    /// are answered the same way.
    pub fn set_flash_fallback(&mut self, identity: Identity, crypto: CryptoSettings) {
        self.flash_fallback = Some(Box::new(FlashFallback {
            identity,
            crypto,
            for_servers: true,
        }));
    }

    /// As [`Self::set_flash_fallback`], for Flash Player peers only: our
    /// sessions to servers keep our own identity, whose fingerprint is the
    /// peer ID the server knows us by. A Flash peer we open a session to
    /// sees us by the fallback's peer ID instead, since it cannot read ours.
    pub fn set_flash_fallback_for_peers(&mut self, identity: Identity, crypto: CryptoSettings) {
        self.flash_fallback = Some(Box::new(FlashFallback {
            identity,
            crypto,
            for_servers: false,
        }));
    }

    /// The identity a session was opened with: ours, or the Flash fallback.
    pub fn near_identity(&self, h: SessionHandle) -> &Identity {
        let flash = self
            .session(h)
            .and_then(|s| s.far.as_ref())
            .is_some_and(|f| f.flash_fallback);
        match (&self.flash_fallback, flash) {
            (Some(f), true) => &f.identity,
            _ => &self.identity,
        }
    }

    /// How far an opening session got, for telling a user why it failed.
    pub fn opening_progress(&self, h: SessionHandle) -> Option<OpeningProgress> {
        let s = self.session(h)?;
        let o = s.opening.as_ref()?;
        Some(OpeningProgress {
            state: s.state,
            candidates: o.candidates.iter().map(|c| c.addr).collect(),
            redirects: o.redirects.clone(),
            rhello_from: o.rhello_from,
            flash_fallback: o.keying.as_ref().is_some_and(|k| k.flash_fallback),
        })
    }
}

/// What [`Endpoint::opening_progress`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningProgress {
    /// `IHelloSent` (no usable RHello yet) or `KeyingSent` (RHello answered
    /// with IIKeying, no RIKeying yet).
    pub state: State,
    pub candidates: Vec<SocketAddr>,
    /// Where Redirects pointed.
    pub redirects: Vec<SocketAddr>,
    pub rhello_from: Option<SocketAddr>,
    /// Keying as Flash Player, the responder looking Flash-era.
    pub flash_fallback: bool,
}

/// Flash Player's identity and crypto, for responders that read nothing
/// else (see [`Endpoint::set_flash_fallback`]).
pub(super) struct FlashFallback {
    pub identity: Identity,
    pub crypto: CryptoSettings,
    /// Flash-era servers too, or only Flash Player peers (an endpoint whose
    /// peer ID is registered with a server keeps its own identity there).
    pub for_servers: bool,
}
