//! Introductions (spec 02 §15.1, spec 04 §11.4) and presence calls
//! (`crate::flash::presence`).
//!
//! An IHello whose EPD names a peer ID is an initiator asking for that peer.
//! If the peer is connected to the initiator's app and sent `setPeerInfo`,
//! the initiator gets a Redirect listing every address we know for the
//! target (observed first, then reported) and the target gets the IHello
//! forwarded (FIHello) so it answers, punching its own NAT. Anything else
//! (no such peer, another app, a stranger, a target that sent no
//! `setPeerInfo`) gets MonaServer's "gone" Redirect, a lone 0.0.0.0:0
//! (spec 06), so the initiator can say so at once instead of timing out;
//! refusals look the same as unknown targets, so presence in other apps
//! does not leak.
//!
//! Amplification: every answer is rate limited per source IP, and is no
//! bigger than the IHello that asked for it times
//! `1 + MAX_REPORTED_ADDRESSES` small address entries (a forged source
//! gets at most `2 × introduction_rate` of them a second).

use super::*;
use crate::flash::presence::{self, PeerEntry};
use crate::proto::wire::address::{AddressOrigin, PeerAddress};

impl Server {
    /// Present clients, by app.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(super) fn on_unmatched_ihello(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        epd: &[u8],
        tag: &[u8],
    ) {
        if !self.introduction_allowed(now, from) {
            self.stats.introductions_limited += 1;
            return;
        }
        let Some(target) = Epd::parse(epd).ok().and_then(|e| e.fingerprint()) else {
            self.deny(ep, now, iface, from, tag, None, false);
            return;
        };
        let Some((session, conn)) = self
            .peers
            .get(&target)
            .and_then(|h| Some((*h, self.conns.get(h)?)))
            .filter(|(_, c)| c.is_connected())
        else {
            self.deny(ep, now, iface, from, tag, Some(target), false);
            return;
        };
        let Some(reported) = conn.reported.clone() else {
            // It did not ask to be introduced (Flash always sends setPeerInfo).
            self.deny(ep, now, iface, from, tag, Some(target), true);
            return;
        };
        if !self.cfg.introductions_across_apps {
            let target_app = self.registry.member(session).map(|m| m.app.as_str());
            let asker_app = self
                .registry
                .at(from)
                .and_then(|h| self.registry.member(h))
                .map(|m| m.app.as_str());
            if asker_app.is_none() || asker_app != target_app {
                self.deny(ep, now, iface, from, tag, Some(target), true);
                return;
            }
        }
        // Observed first, then reported (spec 04 §11.4); origin 2 for the
        // observed address as Cumulus/Mona do, which librtmfp follows.
        let mut addrs = Vec::with_capacity(1 + reported.len());
        addrs.push(PeerAddress {
            addr: conn.observed,
            origin: AddressOrigin::Observed,
        });
        for a in reported {
            if a != conn.observed {
                addrs.push(PeerAddress {
                    addr: a,
                    origin: AddressOrigin::Reported,
                });
            }
        }
        // The target answers the initiator directly: forward only what the
        // initiator's 3x credit and byte budget allowed a Redirect for.
        if !ep.send_redirect(now, iface, from, tag, &addrs) {
            self.stats.introductions_limited += 1;
            return;
        }
        ep.forward_ihello(session, epd, from, tag);
        self.stats.introductions += 1;
        self.emit(ServerEvent::Introduction {
            from,
            target,
            addresses: addrs.len(),
        });
    }

    /// Answers "that peer is not here" (a Redirect listing only 0.0.0.0:0).
    #[allow(clippy::too_many_arguments)]
    fn deny(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        tag: &[u8],
        target: Option<[u8; 32]>,
        refused: bool,
    ) {
        if refused {
            self.stats.introductions_refused += 1;
        } else {
            self.stats.unknown_targets += 1;
        }
        let any = if from.is_ipv6() {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        };
        let gone = PeerAddress {
            addr: any,
            origin: AddressOrigin::Observed,
        };
        ep.send_redirect(now, iface, from, tag, &[gone]);
        self.emit(ServerEvent::IntroductionDenied {
            from,
            target,
            refused,
        });
    }

    pub(super) fn introduction_allowed(&mut self, now: Instant, from: SocketAddr) -> bool {
        let rate = f64::from(self.cfg.introduction_rate);
        if rate == 0.0 {
            return true;
        }
        if self.intro_buckets.len() >= MAX_INTRO_BUCKETS
            && !self.intro_buckets.contains_key(&from.ip())
        {
            self.intro_buckets.clear();
        }
        let (tokens, last) = self
            .intro_buckets
            .entry(from.ip())
            .or_insert((2.0 * rate, now));
        *tokens = (*tokens + now.saturating_since(*last).as_secs_f64() * rate).min(2.0 * rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `setPeerName`, `lookupPeer`, `listPeers` from a connected client;
    /// `false` if `cmd` is none of them.
    pub(super) fn on_presence_command(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        cmd: &Command,
    ) -> bool {
        let name = cmd.name.as_str();
        if ![
            presence::SET_PEER_NAME,
            presence::LOOKUP_PEER,
            presence::LIST_PEERS,
        ]
        .contains(&name)
        {
            return false;
        }
        self.stats.presence_calls += 1;
        let tid = cmd.transaction_id;
        let arg = cmd
            .positional_args()
            .first()
            .and_then(|v| v.to_text())
            .unwrap_or_default();
        let Some(app) = self.registry.member(h).map(|m| m.app.clone()) else {
            return true;
        };
        let reply = match name {
            presence::SET_PEER_NAME => match presence::check_name(&arg) {
                Err(why) => presence::failure(tid, format!("invalid name {arg:?}: {why}")),
                Ok(()) => match self.registry.set_name(h, &arg) {
                    Ok(()) => {
                        if let Some(peer_id) = self.conns.get(&h).map(|c| c.peer_id) {
                            self.emit(ServerEvent::PeerName {
                                session: h,
                                peer_id,
                                name: arg.clone(),
                            });
                        }
                        Command::result(tid, [Value::str(arg)])
                    }
                    Err(_) => {
                        presence::failure(tid, format!("the name {arg:?} is taken in app {app:?}"))
                    }
                },
            },
            presence::LOOKUP_PEER => match self
                .registry
                .lookup(&app, &arg)
                .and_then(|p| self.conns.get(&p))
            {
                Some(c) => Command::result(tid, [Value::str(peer_id_hex(&c.peer_id))]),
                None => presence::failure(tid, format!("no client named {arg:?} in app {app:?}")),
            },
            _ => {
                let list: Vec<Value> = self
                    .registry
                    .in_app(&app)
                    .into_iter()
                    .take(presence::MAX_LISTED)
                    .filter_map(|(p, m)| {
                        let c = self.conns.get(&p)?;
                        Some(
                            PeerEntry {
                                peer_id: c.peer_id,
                                name: m.name.clone(),
                                connected_seconds: now.saturating_since(m.since).as_secs_f64(),
                            }
                            .to_value(),
                        )
                    })
                    .collect();
                Command::result(tid, [Value::StrictArray(list)])
            }
        };
        if tid != 0.0 {
            self.send_command(ep, now, h, reply);
        }
        true
    }
}
