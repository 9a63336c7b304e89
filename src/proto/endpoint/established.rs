//! Open sessions (spec 02 §4-§10): decrypting and dispatching their chunks,
//! mobility, keepalive and idle timeouts, orderly and abrupt close, and
//! building their packets.

use super::*;

impl Endpoint {
    pub(super) fn handle_session_datagram(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        data: &[u8],
    ) {
        // The initiator answered our RIKeying: the keys are needed now.
        if self.session(h).is_some_and(|s| s.pending_keys.is_some()) {
            self.finish_keys(h);
            if self.session(h).is_none() {
                return;
            }
        }
        let mut plain_buf = std::mem::take(&mut self.rx_plain);
        let s = self.session_mut(h).expect("caller checked");
        match s.cipher.open(data, &mut plain_buf) {
            Ok(plain) => {
                s.counters.rx_packets += 1;
                s.counters.rx_bytes += data.len() as u64;
                self.handle_session_plain(now, h, iface, from, plain);
            }
            Err(_) => {
                s.counters.drops += 1;
                if s.state == State::KeyingSent
                    && let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut())
                {
                    // Encrypted with the session key before our RIKeying arrived (spec 01 §8).
                    if k.early.len() >= MAX_EARLY_PACKETS {
                        k.early.pop_front();
                    }
                    k.early.push_back((iface, from, data.to_vec()));
                } else {
                    self.stats.drop(DropReason::Decrypt);
                }
            }
        }
        self.rx_plain = plain_buf;
    }

    pub(super) fn handle_session_plain(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        plain: &[u8],
    ) {
        let Ok((hdr, area)) = PacketHeader::decode(plain) else {
            self.stats.drop(DropReason::Header);
            return;
        };
        let ours = self.timestamp(now);
        let s = self.session_mut(h).expect("caller checked");
        let mode = hdr.mode as u8;
        if hdr.mode == Mode::Startup {
            if s.state != State::KeyingSent {
                self.stats.drop(DropReason::Mode);
                return;
            }
            s.ts.on_receive(hdr.timestamp, now);
            for c in Chunks::new(area) {
                match c {
                    Chunk::RIKeying(ri) => {
                        self.on_rikeying(now, h, &ri);
                        return;
                    }
                    Chunk::CookieChange(cc) => {
                        self.on_cookie_change(now, h, &cc);
                        return;
                    }
                    _ => {}
                }
            }
            return;
        }
        if mode != s.far_mode_bits() || !s.is_established() {
            self.stats.drop(DropReason::Mode);
            return;
        }
        s.last_rx = now;
        // Any authentic packet answers a stale check: the far end is alive.
        s.stale_check = None;
        if s.half_open.is_some() {
            self.confirm(h);
        }
        let s = self.session_mut(h).expect("caller checked");
        // A packet under the session keys proves the initiator got our
        // RIKeying: keep only the digest that recognises stale IIKeyings,
        // not the datagram (memory per idle session).
        if let Some((_, bytes)) = s.rikeying.as_mut()
            && !bytes.is_empty()
        {
            *bytes = Vec::new();
        }
        if s.state == State::Open {
            s.ts.on_receive(hdr.timestamp, now);
            if let Some(rtt) = s.ts.rtt_sample(hdr.timestamp_echo, ours) {
                s.transport.rtt_mut().on_sample(rtt);
            }
        }
        if hdr.time_critical {
            if self.tc_rx_latest.map(|(x, _)| x) != Some(h) {
                self.tc_rx_previous = self.tc_rx_latest;
            }
            self.tc_rx_latest = Some((h, now));
        }
        let rx_ecn = self.rx_ecn;
        let s = self.session_mut(h).expect("caller checked");
        if hdr.time_critical_reverse {
            s.tcr_received = Some(now);
        }
        let mut chunks_ok = true;
        s.transport.begin_packet(now);
        if s.state == State::Open {
            s.transport.on_packet_ecn(rx_ecn);
        }
        let mut close_requested = false;
        let mut close_acked = false;
        let mut fihellos: Vec<(Vec<u8>, SocketAddr, Vec<u8>)> = Vec::new();
        let mut mobility_reply: Option<Vec<u8>> = None;
        let mut probe_rtt: Option<(Instant, Duration)> = None;
        let mut chunks = Chunks::new(area);
        for c in chunks.by_ref() {
            let open = s.state == State::Open;
            match c {
                Chunk::Ping(msg) if open => {
                    s.pending.push_ping_reply(msg);
                }
                Chunk::PingReply(msg) if open => {
                    s.keepalive_outstanding = false;
                    s.retransmit_epoch = None;
                    if mobility_timestamp(msg).is_some() {
                        mobility_reply = Some(msg.to_vec());
                    } else if let [crate::proto::session::PING_MARKING_PROBE, t @ ..] = msg
                        && let Ok(t) = <[u8; 8]>::try_from(t)
                    {
                        let sent = Instant::from_micros(u64::from_be_bytes(t));
                        probe_rtt = Some((sent, now.saturating_since(sent)));
                        s.probe_sent = None;
                    } else if msg.is_empty()
                        && let Some(sent) = s.probe_sent.take()
                    {
                        // A Mona-class peer's echo-less reply (spec 06); it may
                        // answer a keepalive instead, which is close enough.
                        probe_rtt = Some((sent, now.saturating_since(sent)));
                    }
                }
                Chunk::UserData(d) if open => s.transport.on_user_data(now, &d),
                Chunk::NextUserData(d) if open => s.transport.on_next_user_data(now, &d),
                Chunk::Ack(a) if open => s.transport.on_ack(now, &a),
                Chunk::BufferProbe(p) if open => s.transport.on_buffer_probe(now, p.flow_id),
                Chunk::FlowException(e) if open => s.transport.on_exception(now, &e),
                Chunk::FIHello(f) if open => {
                    fihellos.push((f.epd.to_vec(), f.reply_address.addr, f.tag.to_vec()))
                }
                Chunk::Close => close_requested = true,
                Chunk::CloseAck => close_acked = true,
                Chunk::EcnReport(ce) if open => s.transport.on_ecn_report(now, ce),
                Chunk::EcnReport(_) | Chunk::Unknown { .. } => {}
                Chunk::Malformed { .. } => chunks_ok = false,
                _ => {}
            }
        }
        if !chunks_ok || chunks.ended_truncated() {
            self.stats.drop(DropReason::MalformedChunk);
        }
        let tc_ctx = self.tc_context(self.session(h).expect("caller checked"));
        let now_s = self.cookies.seconds(now);
        let s = self.session_mut(h).expect("caller checked");
        if s.state == State::Open {
            s.transport.after_packet(now, &tc_ctx);
        }
        // Mobility (spec 02 §9): a valid packet from somewhere else; at most
        // one check a second.
        let check = s.state == State::Open
            && (iface, from) != (s.iface, s.far_addr)
            && s.last_mobility_check_s.is_none_or(|t| now_s > t);
        if check {
            let payload = mobility_payload(self.cookies.secret(), now_s, iface, from);
            let s = self.session_mut(h).expect("caller checked");
            s.last_mobility_check_s = Some(now_s);
            s.pending.mobility = Some((iface, from, payload));
        }
        if let Some((sent, rtt)) = probe_rtt {
            tracing::trace!(session = h.0, ?rtt, "ping reply");
            self.events.push_back(Event::PingReply {
                session: h,
                rtt,
                sent,
            });
        }
        if let Some(reply) = mobility_reply {
            self.on_mobility_reply(now, h, iface, from, &reply);
        }
        for (epd, reply_to, tag) in fihellos {
            self.on_fihello(now, h, &epd, reply_to, &tag);
        }
        if close_requested {
            self.on_close_request(now, h);
        }
        if close_acked {
            self.on_close_ack(now, h);
        }
        self.mark_ready(h);
        self.mark_events(h);
        self.reschedule_when_sent(h);
    }

    pub(super) fn on_mobility_reply(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        payload: &[u8],
    ) {
        let now_s = self.cookies.seconds(now);
        let Some(ts) = mobility_timestamp(payload) else {
            return;
        };
        let expected = mobility_payload(self.cookies.secret(), ts, iface, from);
        let s = self.session_mut(h).expect("caller checked");
        if s.last_mobility_ts.is_some_and(|last| ts <= last)
            || ts + MAX_MOBILITY_LIFETIME < now_s
            || expected != payload
        {
            return;
        }
        s.last_mobility_ts = Some(ts);
        if (s.iface, s.far_addr) == (iface, from) {
            return;
        }
        let old = (s.iface, s.far_addr);
        s.iface = iface;
        s.far_addr = from;
        if self.by_addr.get(&old) == Some(&h) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert((iface, from), h);
        self.events.push_back(Event::AddressChanged {
            session: h,
            addr: from,
        });
    }

    pub(super) fn on_close_request(&mut self, now: Instant, h: SessionHandle) {
        tracing::debug!(session = h.0, "Close received from the far end");
        let s = self.session_mut(h).expect("caller checked");
        match s.state {
            State::Open => {
                s.state = State::FarCloseLinger;
                s.close_reason = Some(CloseReason::Remote);
                s.pending.close_ack = true;
                s.close_deadline = now + crate::proto::session::FARCLOSE_LINGER_PERIOD;
                self.end_flows(h);
                self.emit_closed(h, CloseReason::Remote);
            }
            State::NearClose | State::FarCloseLinger => s.pending.close_ack = true,
            _ => {}
        }
    }

    pub(super) fn on_close_ack(&mut self, _now: Instant, h: SessionHandle) {
        let s = self.session_mut(h).expect("caller checked");
        match s.state {
            State::Open => self.abort_session(h, true, Some(CloseReason::Remote)),
            State::NearClose => {
                s.pending = Pending::default();
                s.state = State::Closed;
                let reason = s.close_reason.unwrap_or(CloseReason::Local);
                self.emit_closed(h, reason);
            }
            State::FarCloseLinger => {
                s.pending = Pending::default();
                s.state = State::Closed;
            }
            _ => {}
        }
    }

    /// Closes a session: orderly (Close / Close Ack exchange) or abrupt.
    pub fn close(&mut self, now: Instant, h: SessionHandle, orderly: bool) {
        self.close_with(now, h, orderly, CloseReason::Local);
    }

    pub(super) fn close_with(
        &mut self,
        now: Instant,
        h: SessionHandle,
        orderly: bool,
        reason: CloseReason,
    ) {
        // A Close must go out under the session keys.
        self.finish_keys(h);
        let Some(s) = self.session_mut(h) else { return };
        match s.state {
            State::IHelloSent | State::KeyingSent => {
                self.fail_opening(h, OpenFailure::Cancelled);
                return;
            }
            State::Open if orderly => {
                s.state = State::NearClose;
                s.close_reason = Some(reason);
                s.pending.close = true;
                s.close_deadline = now + crate::proto::session::NEARCLOSE_PERIOD;
                s.close_rtx_at = now + crate::proto::session::NEARCLOSE_RTX_PERIOD;
                self.end_flows(h);
            }
            State::Open | State::NearClose | State::FarCloseLinger => {
                // An abrupt close is announced with a lone Close Ack (spec 02 §10).
                // Open and NearClose sessions have not reported their end yet;
                // a lingering one already said "closed by the far end".
                let notify = matches!(s.state, State::Open | State::NearClose);
                s.close_reason = Some(reason);
                self.abort_session(h, true, notify.then_some(reason));
            }
            State::Closed => return,
        }
        self.mark_ready(h);
        self.reschedule(h);
    }

    /// Orderly close of every session (instance shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let handles: Vec<_> = self.sessions().map(|(h, _)| h).collect();
        for h in handles {
            self.close_with(now, h, true, CloseReason::Shutdown);
        }
    }

    /// Ends every flow of `h` and hands their last events to the
    /// application at once (see `flush_flow_events`).
    pub(super) fn end_flows(&mut self, h: SessionHandle) {
        if let Some(s) = self.session_mut(h) {
            s.transport.abort();
        }
        self.flush_flow_events(h);
    }

    /// An abrupt end (spec 02 §10): flows ended, nothing left to send but a
    /// lone Close Ack when `announce`, state Closed; reported as `report`.
    pub(super) fn abort_session(
        &mut self,
        h: SessionHandle,
        announce: bool,
        report: Option<CloseReason>,
    ) {
        self.end_flows(h);
        let Some(s) = self.session_mut(h) else { return };
        s.pending = Pending::default();
        s.pending.close_ack = announce;
        s.state = State::Closed;
        if let Some(reason) = report {
            self.emit_closed(h, reason);
        }
    }

    /// Moves a session's pending flow events (the exceptions
    /// `Transport::abort` raises, unread messages) to the endpoint queue: a
    /// closed session can be reaped before the application polls it, and the
    /// ends of its flows must not vanish with it.
    pub(super) fn flush_flow_events(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        let events: Vec<_> = std::iter::from_fn(|| s.transport.poll_event()).collect();
        self.events.extend(
            events
                .into_iter()
                .map(|event| Event::Flow { session: h, event }),
        );
    }

    pub(super) fn emit_closed(&mut self, h: SessionHandle, reason: CloseReason) {
        tracing::debug!(session = h.0, ?reason, "session closed");
        self.stats.sessions_closed += 1;
        self.events.push_back(Event::Closed { session: h, reason });
    }

    /// Whether packets on `h` should carry TCR: some *other* session is
    /// receiving time-critical data (spec 02 §14.5).
    pub(super) fn report_tcr(&self, h: SessionHandle, now: Instant) -> bool {
        let recent = |x: Option<(SessionHandle, Instant)>| {
            x.filter(|(_, t)| now.saturating_since(*t) < TIMECRITICAL_TIMEOUT)
        };
        match recent(self.tc_rx_latest) {
            Some((latest, _)) if latest != h => true,
            Some(_) => recent(self.tc_rx_previous).is_some(),
            None => false,
        }
    }

    pub(super) fn tc_context(&self, s: &Session) -> crate::proto::flow::TcContext {
        crate::proto::flow::TcContext {
            tc_sent_any: self.tc_sent_any,
            tcr_received: s.tcr_received,
        }
    }

    pub(super) fn session_timeout(&mut self, now: Instant, h: SessionHandle) {
        if self.expire_unconfirmed(now, h) {
            return;
        }
        let Some(s) = self.session_mut(h) else { return };
        match s.state {
            State::IHelloSent | State::KeyingSent => self.opening_timeout(now, h),
            State::Open if s.pending_keys.is_some() => {
                if s.keys_handed {
                    self.finish_keys(h);
                }
            }
            State::Open => self.open_timeout(now, h),
            State::NearClose => {
                if now >= s.close_deadline {
                    s.state = State::Closed;
                    s.pending = Pending::default();
                    let reason = s.close_reason.unwrap_or(CloseReason::Local);
                    self.emit_closed(h, reason);
                } else if now >= s.close_rtx_at {
                    s.pending.close = true;
                    s.close_rtx_at = now + crate::proto::session::NEARCLOSE_RTX_PERIOD;
                    self.mark_ready(h);
                }
            }
            State::FarCloseLinger => {
                if now >= s.close_deadline {
                    s.state = State::Closed;
                    s.pending = Pending::default();
                }
            }
            State::Closed => {}
        }
    }

    pub(super) fn open_timeout(&mut self, now: Instant, h: SessionHandle) {
        let s = self.session_mut(h).expect("caller checked");
        let outcome = s.transport.handle_timeout(now);
        // Retransmission limit (spec 02 §8): data or keepalives have gone
        // unanswered too long; the peer is gone.
        let keepalive_expired = s
            .retransmit_epoch
            .is_some_and(|epoch| now >= epoch + s.liveness.retransmit_limit);
        // A stale check (see `check_stale`) that got no answer ends it too.
        let stale = s.stale_check.is_some_and(|t| now >= t);
        if stale || outcome.give_up || keepalive_expired {
            self.abort_session(h, false, Some(CloseReason::Timeout));
            return;
        }
        if s.keepalive_outstanding {
            if now >= s.keepalive_rtx_at {
                s.transport.rtt_mut().on_timeout();
                s.keepalive_rtx_at = now + s.transport.rtt().erto();
                s.pending.keepalive_ping = true;
                self.mark_ready(h);
            }
        } else if now >= s.keepalive_deadline() && s.transport.bytes_in_flight() == 0 {
            s.keepalive_outstanding = true;
            s.keepalive_rtx_at = now + s.transport.rtt().erto();
            s.arm_retransmit_epoch(now);
            s.pending.keepalive_ping = true;
            s.counters.keepalives_sent += 1;
            self.mark_ready(h);
        }
        let s = self.session_mut(h).expect("caller checked");
        if let Some(idle) = s.liveness.idle_limit
            && now >= s.last_idle + idle
        {
            if !s.transport.has_flows() {
                self.close_with(now, h, true, CloseReason::Idle);
                return;
            }
            s.last_idle = now;
        }
        if s.transport.wants_to_send(now) {
            self.mark_ready(h);
        } else if s.transport.bytes_in_flight() == 0 {
            s.transport.compact();
        }
        self.mark_events(h);
    }

    /// Builds the session's next packet, if it has one.
    pub(super) fn session_transmit(
        &mut self,
        now: Instant,
        h: SessionHandle,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let ours = self.timestamp(now);
        let report_tcr = self.report_tcr(h, now);
        let tc = self.tc_context(self.session(h)?);
        let mut plain = std::mem::take(&mut self.tx_plain);
        let result = self.build_session_packet(now, h, ours, report_tcr, tc, &mut plain, buf);
        self.tx_plain = plain;
        result
    }

    #[allow(clippy::too_many_arguments)] // one call site; the arguments are the packet's inputs
    pub(super) fn build_session_packet(
        &mut self,
        now: Instant,
        h: SessionHandle,
        ours: u16,
        report_tcr: bool,
        mut tc: crate::proto::flow::TcContext,
        plain: &mut [u8],
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let s = self.session_mut(h)?;
        if !(s.is_established() || s.state == State::Closed && s.pending.close_ack) {
            return None;
        }
        // Nothing goes out before the session keys exist (the responder's
        // DH step runs right after its RIKeying has left).
        if s.pending_keys.is_some() {
            return None;
        }
        let mut dst = (s.iface, s.far_addr);
        let limit = header::MAX_SESSION_PACKET.min(plain.len());
        // The packet is written where sealing encrypts it, in the datagram
        // buffer, when that has room: no copy of the plain packet.
        let at = s.cipher.plain_offset();
        let in_place = buf.len() >= s.cipher.overhead(limit);
        let region = if in_place {
            &mut buf[at..at + limit]
        } else {
            &mut plain[..limit]
        };
        let mut w = Writer::new(region);
        let mode = if s.role == Role::Initiator {
            Mode::Initiator
        } else {
            Mode::Responder
        };
        let hdr = PacketHeader {
            time_critical: false,
            time_critical_reverse: report_tcr,
            mode,
            // Always present: MonaServer reads a timestamp whatever the flags
            // say (interop run, see spec 06), and two bytes cost little.
            timestamp: Some(ours),
            timestamp_echo: if s.state == State::Open {
                s.ts.echo(now)
            } else {
                None
            },
        };
        hdr.encode(&mut w).ok()?;
        let header_len = w.len();
        let mut data = false;
        let mut time_critical = false;
        let mut sent_probe = false;
        let p = &mut s.pending;
        if p.close_ack {
            p.close_ack = false;
            chunk::encode_close_ack(&mut w).ok()?;
        } else if p.close {
            p.close = false;
            chunk::encode_close(&mut w).ok()?;
        } else if let Some(msg) = p.ping_replies.pop_front() {
            chunk::encode_ping_reply(&mut w, &msg).ok()?;
        } else if let Some((iface, addr, payload)) = p.mobility.take() {
            dst = (iface, addr);
            chunk::encode_ping(&mut w, &payload).ok()?;
        } else if let Some(probe) = p.probe.take() {
            chunk::encode_ping(&mut w, &probe).ok()?;
            sent_probe = true;
        } else if p.keepalive_ping && !(s.state == State::Open && s.transport.has_data_to_send()) {
            // Data, when there is some, does a keepalive's work, and must go
            // first: Cumulus fails a session whose first packet after the
            // handshake is a Ping ("Timeout connection client"), while the
            // initiator's connect is what its half-open state waits for.
            p.keepalive_ping = false;
            chunk::encode_ping(&mut w, &[]).ok()?;
        } else if let Some(fih) = p.fihellos.pop_front() {
            w.bytes(&fih).ok()?;
        } else if s.state == State::Open {
            let filled = s.transport.fill_packet(now, &mut w, &mut tc);
            if !filled.wrote_any {
                return None;
            }
            if filled.wrote_data {
                s.pending.keepalive_ping = false;
            }
            data = filled.wrote_data && s.transport.send_ect();
            time_critical = filled.time_critical;
        }
        if w.len() == header_len {
            return None;
        }
        let n = w.len();
        if time_critical {
            w.written_mut()[0] |= crate::proto::wire::header::flags::TC;
        }
        self.tc_sent_any = tc.tc_sent_any;
        let s = self.session_mut(h)?;
        let sealed = if in_place {
            s.cipher.seal_in_place(s.far_sid, buf, n)
        } else {
            s.cipher.seal(s.far_sid, &plain[..n], buf)
        };
        let len = sealed.ok()?;
        if sent_probe {
            s.probe_sent = Some(now);
        }
        s.last_tx = now;
        s.counters.tx_packets += 1;
        s.counters.tx_bytes += len as u64;
        Some(Transmit {
            iface: dst.0,
            dst: dst.1,
            len,
            ecn: data,
        })
    }
}
