//! The server's side of the relay fallback ([`crate::flash::relay_fallback`]):
//! publishers declare the direct streams they can also publish here, and a
//! subscriber that cannot reach one directly asks us to ask it. Scoped like
//! introductions (the same app unless introductions cross apps); only a
//! client that declared the stream is ever asked.

use super::*;
use crate::flash::presence::{self, parse_peer_id};
use crate::flash::relay_fallback::{self as rf, MAX_RELAYABLE};

impl Server {
    /// `setRelayable` and `relayStream`; `false` if `cmd` is neither.
    pub(super) fn on_relay_command(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        cmd: &Command,
    ) -> bool {
        let name = cmd.name.as_str();
        if name != rf::SET_RELAYABLE && name != rf::RELAY_STREAM {
            return false;
        }
        let tid = cmd.transaction_id;
        let args: Vec<String> = cmd
            .positional_args()
            .iter()
            .take(2)
            .map(|v| v.to_text().unwrap_or_default())
            .collect();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let reply = if name == rf::SET_RELAYABLE {
            let stream = arg(0);
            let list = self.relayable.entry(h).or_default();
            if stream.is_empty() || stream.len() > 1024 {
                presence::failure(tid, "setRelayable needs a stream name")
            } else if !list.contains(&stream) && list.len() >= MAX_RELAYABLE {
                presence::failure(tid, format!("at most {MAX_RELAYABLE} relayable streams"))
            } else {
                if !list.contains(&stream) {
                    list.push(stream.clone());
                }
                Command::result(tid, [Value::str(stream)])
            }
        } else {
            match self.relay_target(h, &arg(0), &arg(1)) {
                Ok(target) => {
                    self.stats.relays_requested += 1;
                    let info = rf::relay_request(&arg(1));
                    self.send_command(ep, now, target, Command::on_status(&info));
                    Command::result(tid, [Value::Boolean(true)])
                }
                Err(why) => {
                    self.stats.relays_refused += 1;
                    presence::failure(tid, why)
                }
            }
        };
        if tid != 0.0 {
            self.send_command(ep, now, h, reply);
        }
        true
    }

    fn relay_target(
        &self,
        from: SessionHandle,
        peer: &str,
        stream: &str,
    ) -> Result<SessionHandle, String> {
        let id = parse_peer_id(peer).ok_or("relayStream needs a peer ID (64 hex digits)")?;
        let target = *self
            .peers
            .get(&id)
            .ok_or_else(|| format!("peer {peer} is not connected"))?;
        let app = |s| self.registry.member(s).map(|m| m.app.clone());
        if !self.cfg.introductions_across_apps && app(target) != app(from) {
            return Err(format!("peer {peer} is not connected to this app"));
        }
        if !self
            .relayable
            .get(&target)
            .is_some_and(|l| l.iter().any(|s| s == stream))
        {
            return Err(format!(
                "peer {peer} cannot publish {stream:?} through the server (not an rtmfp publisher, or another stream)"
            ));
        }
        Ok(target)
    }
}
