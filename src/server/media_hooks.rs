//! Where the connection logic of [`Server`] hands stream flows to the
//! media relay ([`super::streams`]).

use super::Server;
use super::streams::{ConnCtx, Effect};
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};

/// Receiving flows of one publishing stream given room for whole frames;
/// a client needs three (data, audio, video; spec 04 §3).
const ROOMY_FLOWS_PER_STREAM: usize = 4;

impl Server {
    /// A message on a client's stream flow (not its control flow).
    pub(super) fn on_stream_message(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        flow: u64,
        data: Vec<u8>,
    ) {
        let Some(c) = self.conns.get(&h) else { return };
        let Some(sid) = c
            .stream_flows
            .iter()
            .find(|(f, _)| *f == flow)
            .and_then(|&(_, s)| u32::try_from(s).ok())
        else {
            return;
        };
        if !c.is_connected() {
            return;
        }
        let ctx = ConnCtx {
            session: h,
            control_rx: c.control_rx,
            control_tx: c.control_tx,
        };
        if self.media.on_message(ep, now, ctx, sid, data) == Effect::Publishing {
            self.media_flow_room(ep, h, u64::from(sid));
        }
    }

    /// Gives a publishing stream's flows a receive buffer that holds a
    /// whole frame (a 2 MB keyframe must fit while it is reassembled);
    /// other stream flows keep the small default.
    pub(super) fn media_flow_room(&mut self, ep: &mut Endpoint, h: SessionHandle, sid: u64) {
        let Ok(sid32) = u32::try_from(sid) else {
            return;
        };
        if !self.media.is_publishing(h, sid32) {
            return;
        }
        let Some(c) = self.conns.get(&h) else { return };
        let flows: Vec<u64> = c
            .stream_flows
            .iter()
            .filter(|(_, s)| *s == sid)
            .map(|(f, _)| *f)
            .take(ROOMY_FLOWS_PER_STREAM)
            .collect();
        let room = self.media.config().publish_recv_buffer;
        if let Some(t) = ep.transport(h) {
            for f in flows {
                t.set_recv_buffer(f, room);
            }
        }
        ep.wake(h);
    }
}
