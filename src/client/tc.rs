//! The client side of one Flash NetConnection over an open RTMFP session
//! (spec 04 §3, §5): the control flow, `connect`, its reply, `setPeerInfo`
//! and the server's Set Keepalive Timers.

use std::net::SocketAddr;

use crate::flash::command::format_peer_address;
use crate::flash::message::encode_command;
use crate::flash::{
    Body, Command, Connect, KeepalivePeriods, Message, NetCommand, StatusInfo, TcMetadata,
    UserControl, Value,
};
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::proto::flow::{FlowError, FlowEvent, Priority, WriteOptions};

/// What Flash Player says it is; servers that parse `flashVer` expect this shape.
pub const FLASH_VER: &str = "LNX 32,0,0,0";

/// Flow exception code for flows we do not take (the reference uses 0 too).
const REJECT_CODE: u64 = 0;

/// Where the NetConnection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcState {
    /// Session not open yet, or `connect` sent and no reply.
    Connecting,
    Connected,
    /// Rejected, failed or ended; nothing more will happen.
    Finished,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq)]
pub enum TcEvent {
    /// The connect reply: the first `_result` after `connect` (librtmfp and
    /// MonaServer reply with tid 0, so the tid is not checked).
    Connected {
        /// The info object (first value), `Null` if the server sent none.
        info: Value,
    },
    /// `_error` (or a `Connect.Rejected` status) in answer to `connect`.
    Rejected {
        info: Option<StatusInfo>,
        /// Why, when there is no info object (e.g. the control flow was refused).
        reason: Option<String>,
    },
    /// The exchange broke: malformed reply, control flow ended before a reply.
    Failed(String),
    /// Set Keepalive Timers, already applied to the session.
    Keepalive(KeepalivePeriods),
    /// `onStatus` on the NetConnection after connecting.
    Status(StatusInfo),
    /// The server ended the NetConnection (its control flow finished).
    Ended,
}

/// One NetConnection on one session.
#[derive(Debug)]
pub struct TcClient {
    pub session: SessionHandle,
    state: TcState,
    connect: Connect,
    /// Our control flow ("C→S control", spec 04 §3 flow 1).
    control: Option<u64>,
    /// The server's control flow, associated with ours (flow 2).
    server_control: Option<u64>,
}

impl TcClient {
    pub fn new(session: SessionHandle, connect: Connect) -> Self {
        Self {
            session,
            state: TcState::Connecting,
            connect,
            control: None,
            server_control: None,
        }
    }

    /// The `connect` Flash Player sends (spec 04 §5.1), with
    /// `objectEncoding` 0 so replies stay AMF0.
    pub fn flash_connect(app: &str, tc_url: &str) -> Connect {
        Connect {
            object_encoding: Some(0.0),
            ..Connect::flash(app, tc_url, FLASH_VER)
        }
    }

    pub fn state(&self) -> TcState {
        self.state
    }

    /// Our control flow, once started (NetStream flows from the server answer it).
    pub fn control_flow(&self) -> Option<u64> {
        self.control
    }

    /// The server's control flow, once it opened it (it carries `_result`s).
    pub fn server_control_flow(&self) -> Option<u64> {
        self.server_control
    }

    /// Once the session is open: opens the control flow (`TC` stream 0,
    /// priority IMMEDIATE, no association, spec 04 §3) and sends `connect`.
    pub fn start(&mut self, ep: &mut Endpoint) -> Result<(), FlowError> {
        let msg = encode_command(&self.connect.to_command()).map_err(|_| FlowError::Closed)?;
        let t = ep.transport(self.session).ok_or(FlowError::Closed)?;
        let flow = t.open_flow(&TcMetadata::new(0).to_bytes(), None, Priority::Immediate)?;
        t.write(flow, &msg, WriteOptions::default())?;
        self.control = Some(flow);
        ep.wake(self.session);
        Ok(())
    }

    /// Sends `setPeerInfo` with our host addresses (spec 04 §5.3; Flash does
    /// this right after connecting). Non-transactional, so no reply is owed.
    pub fn send_peer_info(
        &mut self,
        ep: &mut Endpoint,
        addrs: &[SocketAddr],
    ) -> Result<(), FlowError> {
        let cmd = NetCommand::SetPeerInfo {
            transaction_id: 0.0,
            addresses: addrs.iter().map(format_peer_address).collect(),
        }
        .to_command();
        self.write_command(ep, &cmd)
    }

    fn write_command(&mut self, ep: &mut Endpoint, cmd: &Command) -> Result<(), FlowError> {
        let flow = self.control.ok_or(FlowError::UnknownFlow)?;
        let msg = encode_command(cmd).map_err(|_| FlowError::Closed)?;
        let t = ep.transport(self.session).ok_or(FlowError::Closed)?;
        t.write(flow, &msg, WriteOptions::default())?;
        ep.wake(self.session);
        Ok(())
    }

    /// Ends the NetConnection from our side (closing the control flow ends it, spec 04 §3).
    pub fn close(&mut self, ep: &mut Endpoint) {
        if let (Some(flow), Some(t)) = (self.control, ep.transport(self.session)) {
            t.close_flow(flow);
            ep.wake(self.session);
        }
        self.state = TcState::Finished;
    }

    /// Feeds one flow event of our session.
    pub fn on_flow_event(&mut self, ep: &mut Endpoint, event: FlowEvent) -> Option<TcEvent> {
        match event {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => {
                let md = TcMetadata::parse(&metadata).ok();
                let answers_ours = return_for.is_some() && return_for == self.control;
                if answers_ours
                    && md.is_some_and(|m| m.is_control())
                    && self.server_control.is_none()
                {
                    self.server_control = Some(flow);
                } else {
                    // We create no NetStreams, so nothing else is ours to take.
                    if let Some(t) = ep.transport(self.session) {
                        t.reject_flow(flow, REJECT_CODE);
                    }
                    ep.wake(self.session);
                }
                None
            }
            FlowEvent::Message { flow, data } => {
                if Some(flow) != self.server_control {
                    return None;
                }
                self.on_control_message(ep, &data)
            }
            FlowEvent::FlowComplete { flow } if Some(flow) == self.server_control => {
                self.server_control = None;
                self.finish_with(match self.state {
                    TcState::Connecting => {
                        TcEvent::Failed("server closed its control flow before replying".into())
                    }
                    _ => TcEvent::Ended,
                })
            }
            FlowEvent::Exception { flow, code } if Some(flow) == self.control => {
                self.finish_with(match self.state {
                    TcState::Connecting => TcEvent::Rejected {
                        info: None,
                        reason: Some(format!("server refused the control flow (code {code})")),
                    },
                    _ => TcEvent::Ended,
                })
            }
            _ => None,
        }
    }

    fn finish_with(&mut self, e: TcEvent) -> Option<TcEvent> {
        if self.state == TcState::Finished {
            return None;
        }
        self.state = TcState::Finished;
        Some(e)
    }

    fn on_control_message(&mut self, ep: &mut Endpoint, data: &[u8]) -> Option<TcEvent> {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) if self.state == TcState::Connecting => {
                return self.finish_with(TcEvent::Failed(format!("malformed reply: {e}")));
            }
            // After connecting, an odd message is the server's business.
            Err(_) => return None,
        };
        match msg.body {
            Body::Command { command, .. } => self.on_command(&command),
            Body::UserControl(uc @ UserControl::SetKeepalive { .. }) => {
                let periods = uc.keepalive_periods()?;
                ep.set_keepalive(self.session, periods.server);
                Some(TcEvent::Keepalive(periods))
            }
            _ => None,
        }
    }

    fn on_command(&mut self, command: &Command) -> Option<TcEvent> {
        let parsed = NetCommand::parse(command);
        match (self.state, parsed) {
            (TcState::Connecting, Ok(NetCommand::Result { values, .. })) => {
                self.state = TcState::Connected;
                Some(TcEvent::Connected {
                    info: values.into_iter().next().unwrap_or(Value::Null),
                })
            }
            (TcState::Connecting, Ok(NetCommand::Error { info, values, .. })) => {
                let reason = info
                    .is_none()
                    .then(|| format!("_error without info object ({} values)", values.len()));
                self.finish_with(TcEvent::Rejected { info, reason })
            }
            (TcState::Connecting, Ok(NetCommand::OnStatus(info)))
                if info.code.starts_with("NetConnection.Connect.") =>
            {
                // Some servers report a refusal as a status event instead.
                self.finish_with(TcEvent::Rejected {
                    info: Some(info),
                    reason: None,
                })
            }
            (TcState::Connected, Ok(NetCommand::OnStatus(info))) => Some(TcEvent::Status(info)),
            _ => None,
        }
    }
}

/// The reflexive address a server reports, if any: `publicAddress` in a
/// connect reply or ConnectivityCheck results (spec 04 §5.1, 05 §3).
pub fn public_address(info: &Value) -> Option<SocketAddr> {
    info.get("publicAddress")?.to_text()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::Level;
    use crate::proto::Instant;
    use crate::proto::crypto::{DhGroup, Identity};
    use crate::proto::endpoint::EndpointConfig;
    use crate::proto::rng::SeededRng;
    use std::time::Duration;

    const OURS: u64 = 1;
    const THEIRS: u64 = 7;

    /// An endpoint without sessions: the client only needs it to reject
    /// flows or apply keepalives, which a missing session ignores.
    fn endpoint() -> Endpoint {
        let mut rng = SeededRng::new(1);
        let id = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
        Endpoint::new(
            id,
            EndpointConfig::default(),
            Box::new(SeededRng::new(2)),
            Instant::ZERO,
        )
    }

    /// A client whose control flow (1) is open and whose server flow (7) was accepted.
    fn connecting(ep: &mut Endpoint) -> TcClient {
        let mut c = TcClient::new(
            SessionHandle(1),
            TcClient::flash_connect("live", "rtmfp://h/live"),
        );
        c.control = Some(OURS);
        let e = c.on_flow_event(
            ep,
            FlowEvent::NewFlow {
                flow: THEIRS,
                metadata: TcMetadata::new(0).to_bytes(),
                return_for: Some(OURS),
            },
        );
        assert_eq!(e, None);
        assert_eq!(c.server_control, Some(THEIRS));
        c
    }

    fn msg(flow: u64, cmd: Command) -> FlowEvent {
        FlowEvent::Message {
            flow,
            data: encode_command(&cmd).unwrap(),
        }
    }

    #[test]
    fn connect_object_is_flashs_with_amf0() {
        let c = TcClient::flash_connect("live", "rtmfp://h/live");
        assert_eq!(c.transaction_id, 1.0);
        assert_eq!(c.object_encoding, Some(0.0));
        assert_eq!(c.flash_ver.as_deref(), Some(FLASH_VER));
        assert_eq!(c.fpad, Some(false));
        assert_eq!(c.app.as_deref(), Some("live"));
        assert_eq!(c.tc_url.as_deref(), Some("rtmfp://h/live"));
        assert!(c.capabilities.is_some() && c.audio_codecs.is_some() && c.video_codecs.is_some());
    }

    #[test]
    fn first_result_is_the_connect_reply_whatever_its_tid() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let info = StatusInfo::connect_success("hi", 0.0).to_value();
        // MonaServer/librtmfp style: tid 0.
        let e = c.on_flow_event(&mut ep, msg(THEIRS, Command::result(0.0, [info.clone()])));
        assert_eq!(e, Some(TcEvent::Connected { info }));
        assert_eq!(c.state(), TcState::Connected);
        // A later `_result` is not another connect reply.
        let e = c.on_flow_event(&mut ep, msg(THEIRS, Command::result(1.0, [])));
        assert_eq!(e, None);
    }

    #[test]
    fn error_is_a_rejection_with_its_status() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let cmd = Command::error(1.0, &StatusInfo::connect_rejected("no"));
        match c.on_flow_event(&mut ep, msg(THEIRS, cmd)) {
            Some(TcEvent::Rejected {
                info: Some(i),
                reason: None,
            }) => {
                assert_eq!(i.code, "NetConnection.Connect.Rejected");
                assert_eq!(i.level, Level::Error);
                assert_eq!(i.description.as_deref(), Some("no"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.state(), TcState::Finished);
    }

    #[test]
    fn messages_on_other_flows_are_not_replies() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let e = c.on_flow_event(&mut ep, msg(THEIRS + 1, Command::result(1.0, [])));
        assert_eq!(e, None);
        assert_eq!(c.state(), TcState::Connecting);
    }

    #[test]
    fn unassociated_or_non_tc_flows_are_not_taken() {
        let mut ep = endpoint();
        let mut c = TcClient::new(SessionHandle(1), Connect::new("a", "rtmfp://h/a"));
        c.control = Some(OURS);
        for (md, ret) in [
            (TcMetadata::new(0).to_bytes(), None),
            (TcMetadata::new(0).to_bytes(), Some(OURS + 1)),
            (b"GR\x01".to_vec(), Some(OURS)),
            (TcMetadata::new(3).to_bytes(), Some(OURS)),
        ] {
            c.on_flow_event(
                &mut ep,
                FlowEvent::NewFlow {
                    flow: THEIRS,
                    metadata: md,
                    return_for: ret,
                },
            );
            assert_eq!(c.server_control, None);
        }
    }

    #[test]
    fn malformed_reply_while_connecting_fails() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let e = c.on_flow_event(
            &mut ep,
            FlowEvent::Message {
                flow: THEIRS,
                data: vec![0x14, 0, 0, 0, 0, 0x02, 0x00],
            },
        );
        assert!(matches!(e, Some(TcEvent::Failed(_))), "{e:?}");
    }

    #[test]
    fn set_keepalive_is_floored_and_reported() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let uc = UserControl::SetKeepalive {
            server_ms: 1000,
            peer_ms: 20_000,
        };
        let e = c.on_flow_event(
            &mut ep,
            FlowEvent::Message {
                flow: THEIRS,
                data: uc.to_message(),
            },
        );
        assert_eq!(
            e,
            Some(TcEvent::Keepalive(KeepalivePeriods {
                server: Duration::from_secs(5),
                peer: Duration::from_secs(20),
            }))
        );
    }

    #[test]
    fn refused_control_flow_is_a_rejection_and_a_closed_one_a_failure() {
        let mut ep = endpoint();
        let mut c = connecting(&mut ep);
        let e = c.on_flow_event(
            &mut ep,
            FlowEvent::Exception {
                flow: OURS,
                code: 3,
            },
        );
        assert!(
            matches!(&e, Some(TcEvent::Rejected { info: None, reason: Some(r) }) if r.contains("code 3")),
            "{e:?}"
        );
        let mut c = connecting(&mut ep);
        let e = c.on_flow_event(&mut ep, FlowEvent::FlowComplete { flow: THEIRS });
        assert!(matches!(e, Some(TcEvent::Failed(_))), "{e:?}");
    }

    #[test]
    fn public_address_is_read_from_info() {
        let v = Value::object([("publicAddress", Value::str("192.0.2.1:5000"))]);
        assert_eq!(public_address(&v), Some("192.0.2.1:5000".parse().unwrap()));
        assert_eq!(public_address(&Value::Null), None);
    }
}
