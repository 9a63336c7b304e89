//! NetConnection and NetStream commands (spec 04 §5, §7): the generic
//! `name ‖ transactionID ‖ commandObject ‖ args…` shape, typed builders and
//! parsers for the commands a TC client and server exchange, status info
//! objects with the standard codes, and transaction ID bookkeeping.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use thiserror::Error;

use super::amf0::{AmfError, Value};

/// Command names (spec 04 §5, §7).
pub mod name {
    pub const CONNECT: &str = "connect";
    pub const RESULT: &str = "_result";
    pub const ERROR: &str = "_error";
    pub const ON_STATUS: &str = "onStatus";
    pub const SET_PEER_INFO: &str = "setPeerInfo";
    pub const CREATE_STREAM: &str = "createStream";
    pub const DELETE_STREAM: &str = "deleteStream";
    pub const CLOSE_STREAM: &str = "closeStream";
    pub const PLAY: &str = "play";
    pub const PUBLISH: &str = "publish";
    pub const PAUSE: &str = "pause";
    pub const RECEIVE_AUDIO: &str = "receiveAudio";
    pub const RECEIVE_VIDEO: &str = "receiveVideo";
    pub const RELEASE_STREAM: &str = "releaseStream";
    pub const FC_PUBLISH: &str = "FCPublish";
    pub const FC_UNPUBLISH: &str = "FCUnpublish";
    /// Data-message handler names (spec 04 §7.1, §7.2).
    pub const SET_DATA_FRAME: &str = "@setDataFrame";
    pub const CLEAR_DATA_FRAME: &str = "@clearDataFrame";
    pub const ON_META_DATA: &str = "onMetaData";
    pub const RTMP_SAMPLE_ACCESS: &str = "|RtmpSampleAccess";
}

/// Standard status codes (spec 04 §7.4).
/// How a server at capacity words its `Connect.Rejected` description.
pub const SERVER_FULL: &str = "server full";

pub mod code {
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    pub const CONNECT_FAILED: &str = "NetConnection.Connect.Failed";
    pub const CONNECT_CLOSED: &str = "NetConnection.Connect.Closed";
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    pub const SHUTDOWN_NOTIFY: &str = "NetConnection.Shutdown.Notify";
    pub const ADDRESS_CHANGE_NOTIFY: &str = "NetConnection.AddressChange.Notify";
    pub const CONNECTIVITY_CHECK_RESULTS: &str = "NetConnection.ConnectivityCheck.Results";
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    pub const PLAY_START: &str = "NetStream.Play.Start";
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    pub const STREAM_CONNECT_SUCCESS: &str = "NetStream.Connect.Success";
    pub const STREAM_CONNECT_CLOSED: &str = "NetStream.Connect.Closed";
    pub const STREAM_CONNECT_REJECTED: &str = "NetStream.Connect.Rejected";
}

/// `connect` always uses transaction 1 (spec 04 §5).
pub const CONNECT_TRANSACTION_ID: f64 = 1.0;

/// The `directConnections` publish target for P2P NetStreams (spec 04 §8).
pub const DIRECT_CONNECTIONS: &str = "directConnections";

/// A command: `name ‖ transactionID ‖ commandObject ‖ args…` (spec 04 §5).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// `None` when the sender omitted it: librtmfp's `createStream` ends
    /// after the transaction ID. Builders always set `Some(Null)` or an object.
    pub command_object: Option<Value>,
    pub args: Vec<Value>,
}

impl Command {
    /// A command with a null command object and no arguments.
    pub fn new(name: impl Into<String>, transaction_id: f64) -> Self {
        Self {
            name: name.into(),
            transaction_id,
            command_object: Some(Value::Null),
            args: Vec::new(),
        }
    }

    pub fn with_args(mut self, args: impl IntoIterator<Item = Value>) -> Self {
        self.args.extend(args);
        self
    }

    /// From decoded values. `None` unless they start with a name string and
    /// a number. Names and IDs behind the AMF3 escape are accepted.
    pub fn from_values(values: Vec<Value>) -> Option<Self> {
        let mut it = values.into_iter();
        let name = it.next()?.to_text()?;
        let transaction_id = it.next()?.as_f64()?;
        let command_object = it.next();
        Some(Self {
            name,
            transaction_id,
            command_object,
            args: it.collect(),
        })
    }

    /// Appends the AMF0 values (no message header).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmfError> {
        super::amf0::encode_str(out, &self.name)?;
        Value::Number(self.transaction_id).encode(out)?;
        if let Some(o) = &self.command_object {
            o.encode(out)?;
        } else if !self.args.is_empty() {
            // Arguments cannot follow a missing command object; write null.
            Value::Null.encode(out)?;
        }
        for a in &self.args {
            a.encode(out)?;
        }
        Ok(())
    }

    /// The info object of a status-like command: the first argument, or
    /// the command object itself when there are no arguments (librtmfp's
    /// P2P publisher sends `onStatus, 0, {info}` without the null).
    pub fn info_object(&self) -> Option<&Value> {
        match (self.args.first(), &self.command_object) {
            (Some(v), _) => Some(v),
            (None, Some(o)) if o.members().is_some() => Some(o),
            _ => None,
        }
    }

    /// The arguments, with the command object in front when it is plainly
    /// an argument (not null, undefined or an object): librtmfp leaves the
    /// null out of some commands (`setPeerInfo`), which shifts the first
    /// argument into the command-object slot.
    pub fn positional_args(&self) -> Vec<&Value> {
        let shifted = self
            .command_object
            .as_ref()
            .filter(|o| !o.is_null_or_undefined() && o.members().is_none());
        shifted.into_iter().chain(&self.args).collect()
    }

    pub fn is_transaction(&self) -> bool {
        self.transaction_id != 0.0
    }

    /// `"_result", tid, null, values…`.
    pub fn result(transaction_id: f64, values: impl IntoIterator<Item = Value>) -> Self {
        Self::new(name::RESULT, transaction_id).with_args(values)
    }

    /// `"_error", tid, null, info`.
    pub fn error(transaction_id: f64, info: &StatusInfo) -> Self {
        Self::new(name::ERROR, transaction_id).with_args([info.to_value()])
    }

    /// `"onStatus", 0, null, info`.
    pub fn on_status(info: &StatusInfo) -> Self {
        Self::new(name::ON_STATUS, 0.0).with_args([info.to_value()])
    }

    /// The answer to an unknown method (spec 04 §5.5): `_error` if the call
    /// was a transaction, otherwise `onStatus`.
    pub fn call_failed(request: &Command) -> Self {
        let info = StatusInfo::new(Level::Error, code::CALL_FAILED)
            .description("Method not found")
            .detail(request.name.clone());
        if request.is_transaction() {
            Self::error(request.transaction_id, &info)
        } else {
            Self::on_status(&info)
        }
    }
}

/// Why a command does not have the shape its name promises.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("{command}: missing {what}")]
    Missing {
        command: &'static str,
        what: &'static str,
    },
    #[error("{command}: {what} has the wrong type")]
    WrongType {
        command: &'static str,
        what: &'static str,
    },
}

/// `level` of a status info object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Status,
    Warning,
    Error,
    Other(String),
}

impl Level {
    pub fn as_str(&self) -> &str {
        match self {
            Level::Status => "status",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "status" => Level::Status,
            "warning" => Level::Warning,
            "error" => Level::Error,
            s => Level::Other(s.to_owned()),
        }
    }
}

/// A status info object (spec 04 §5): `level`, `code`, usually
/// `description` and `detail`, plus anything else in `extra` (in order).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInfo {
    pub level: Level,
    pub code: String,
    pub description: Option<String>,
    pub detail: Option<String>,
    pub extra: Vec<(String, Value)>,
}

impl StatusInfo {
    pub fn new(level: Level, code: impl Into<String>) -> Self {
        Self {
            level,
            code: code.into(),
            description: None,
            detail: None,
            extra: Vec::new(),
        }
    }

    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    pub fn with(mut self, key: impl Into<String>, v: Value) -> Self {
        self.extra.push((key.into(), v));
        self
    }

    /// The usual connect success info (spec 04 §5.1), echoing the client's
    /// object encoding.
    pub fn connect_success(description: impl Into<String>, object_encoding: f64) -> Self {
        Self::new(Level::Status, code::CONNECT_SUCCESS)
            .description(description)
            .with("objectEncoding", Value::Number(object_encoding))
    }

    /// The refusal of a server at capacity: `Connect.Rejected` whose
    /// description starts with [`SERVER_FULL`], which clients report as such.
    pub fn server_full(detail: &str) -> Self {
        Self::connect_rejected(format!("{SERVER_FULL}: {detail}"))
    }

    /// Is this the refusal of a server at capacity?
    pub fn is_server_full(&self) -> bool {
        self.code == code::CONNECT_REJECTED
            && self
                .description
                .as_deref()
                .is_some_and(|d| d.starts_with(SERVER_FULL))
    }

    pub fn connect_rejected(description: impl Into<String>) -> Self {
        Self::new(Level::Error, code::CONNECT_REJECTED).description(description)
    }

    /// A NetStream event with the level spec 04 §7.4 gives its code
    /// (`error` for BadName, StreamNotFound, Failed, Rejected; else
    /// `status`), a description and the stream name as detail.
    pub fn stream_event(
        code: &str,
        description: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        let level = match code {
            code::PUBLISH_BAD_NAME
            | code::PLAY_STREAM_NOT_FOUND
            | code::PLAY_FAILED
            | code::STREAM_CONNECT_REJECTED
            | code::CONNECT_REJECTED
            | code::CONNECT_FAILED
            | code::CALL_FAILED => Level::Error,
            _ => Level::Status,
        };
        Self::new(level, code).description(description).detail(name)
    }

    /// Object with keys `level, code, description, detail, extra…`.
    pub fn to_value(&self) -> Value {
        let mut m = vec![
            ("level".to_owned(), Value::str(self.level.as_str())),
            ("code".to_owned(), Value::str(self.code.clone())),
        ];
        if let Some(d) = &self.description {
            m.push(("description".to_owned(), Value::str(d.clone())));
        }
        if let Some(d) = &self.detail {
            m.push(("detail".to_owned(), Value::str(d.clone())));
        }
        m.extend(self.extra.iter().cloned());
        Value::Object(m)
    }

    /// Reads an info object; it must have a string `code`. A missing level
    /// reads as `status`. Non-string description/detail go to `extra`.
    pub fn from_value(v: &Value) -> Option<Self> {
        let members = v.members()?;
        let mut info = StatusInfo::new(Level::Status, String::new());
        let mut have_code = false;
        for (k, v) in members {
            match (k.as_str(), v.to_text()) {
                ("level", Some(s)) => info.level = Level::parse(&s),
                ("code", Some(s)) => {
                    info.code = s;
                    have_code = true;
                }
                ("description", Some(s)) => info.description = Some(s),
                ("detail", Some(s)) => info.detail = Some(s),
                _ => info.extra.push((k.clone(), v.clone())),
            }
        }
        have_code.then_some(info)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// The `connect` command object (spec 04 §5.1) and extra arguments.
/// Known keys are typed; any other key, or a known key with an unexpected
/// type, is kept in `extra` in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    /// 1 for Flash and the reference; librtmfp sends 0.
    pub transaction_id: f64,
    pub app: Option<String>,
    pub flash_ver: Option<String>,
    pub swf_url: Option<String>,
    pub tc_url: Option<String>,
    pub fpad: Option<bool>,
    pub capabilities: Option<f64>,
    pub audio_codecs: Option<f64>,
    pub video_codecs: Option<f64>,
    pub video_function: Option<f64>,
    pub page_url: Option<String>,
    pub object_encoding: Option<f64>,
    pub extra: Vec<(String, Value)>,
    /// Positional arguments after the object (auth tokens, spec 04 §5.2).
    pub args: Vec<Value>,
}

impl Connect {
    /// What the reference client sends: `app`, `tcUrl`, `objectEncoding` 0.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        Self {
            transaction_id: CONNECT_TRANSACTION_ID,
            app: Some(app.into()),
            tc_url: Some(tc_url.into()),
            object_encoding: Some(0.0),
            ..Self::default()
        }
    }

    /// The field set Flash Player sends (spec 04 §5.1), with its usual
    /// capability values. `swfUrl`/`pageUrl` empty, `objectEncoding` 3.
    pub fn flash(
        app: impl Into<String>,
        tc_url: impl Into<String>,
        flash_ver: impl Into<String>,
    ) -> Self {
        Self {
            flash_ver: Some(flash_ver.into()),
            swf_url: Some(String::new()),
            fpad: Some(false),
            capabilities: Some(235.0),
            audio_codecs: Some(3575.0),
            video_codecs: Some(252.0),
            video_function: Some(1.0),
            page_url: Some(String::new()),
            object_encoding: Some(3.0),
            ..Self::new(app, tc_url)
        }
    }

    /// The object, keys in Flash's order, then `extra`.
    pub fn command_object(&self) -> Value {
        let mut m: Vec<(String, Value)> = Vec::new();
        let mut s = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.push((k.to_owned(), Value::str(v.clone())));
            }
        };
        s("app", &self.app);
        s("flashVer", &self.flash_ver);
        s("swfUrl", &self.swf_url);
        s("tcUrl", &self.tc_url);
        if let Some(b) = self.fpad {
            m.push(("fpad".to_owned(), Value::Boolean(b)));
        }
        let mut n = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.push((k.to_owned(), Value::Number(v)));
            }
        };
        n("capabilities", self.capabilities);
        n("audioCodecs", self.audio_codecs);
        n("videoCodecs", self.video_codecs);
        n("videoFunction", self.video_function);
        if let Some(p) = &self.page_url {
            m.push(("pageUrl".to_owned(), Value::str(p.clone())));
        }
        if let Some(e) = self.object_encoding {
            m.push(("objectEncoding".to_owned(), Value::Number(e)));
        }
        m.extend(self.extra.iter().cloned());
        Value::Object(m)
    }

    pub fn to_command(&self) -> Command {
        Command {
            name: name::CONNECT.to_owned(),
            transaction_id: self.transaction_id,
            command_object: Some(self.command_object()),
            args: self.args.clone(),
        }
    }

    fn from_command(c: &Command) -> Result<Self, CommandError> {
        const CMD: &str = name::CONNECT;
        let obj = c.command_object.as_ref().ok_or(CommandError::Missing {
            command: CMD,
            what: "command object",
        })?;
        let members = obj.members().ok_or(CommandError::WrongType {
            command: CMD,
            what: "command object",
        })?;
        let mut out = Connect {
            transaction_id: c.transaction_id,
            args: c.args.clone(),
            ..Connect::default()
        };
        for (k, v) in members {
            let taken = match k.as_str() {
                "app" => set(&mut out.app, v.to_text()),
                "flashVer" => set(&mut out.flash_ver, v.to_text()),
                "swfUrl" => set(&mut out.swf_url, v.to_text()),
                "tcUrl" => set(&mut out.tc_url, v.to_text()),
                "pageUrl" => set(&mut out.page_url, v.to_text()),
                "fpad" => set(&mut out.fpad, v.as_bool()),
                "capabilities" => set(&mut out.capabilities, v.as_f64()),
                "audioCodecs" => set(&mut out.audio_codecs, v.as_f64()),
                "videoCodecs" => set(&mut out.video_codecs, v.as_f64()),
                "videoFunction" => set(&mut out.video_function, v.as_f64()),
                "objectEncoding" => set(&mut out.object_encoding, v.as_f64()),
                _ => false,
            };
            if !taken {
                out.extra.push((k.clone(), v.clone()));
            }
        }
        Ok(out)
    }

    /// `app`, or when absent the path of `tcUrl` without its leading `/`
    /// (spec 04 §5.1).
    pub fn app_name(&self) -> Option<String> {
        if let Some(a) = &self.app {
            return Some(a.clone());
        }
        let url = self.tc_url.as_deref()?;
        let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        Some(
            after_scheme
                .split_once('/')
                .map_or("", |(_, p)| p)
                .to_owned(),
        )
    }

    pub fn extra_value(&self, key: &str) -> Option<&Value> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Stores `v` unless the slot is already filled (first occurrence wins) or
/// `v` is `None`; returns whether it was stored.
fn set<T>(slot: &mut Option<T>, v: Option<T>) -> bool {
    if slot.is_some() || v.is_none() {
        return false;
    }
    *slot = v;
    true
}

/// `play` (spec 04 §7.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Play {
    /// `None` (missing or not a string) means "stop playing".
    pub name: Option<String>,
    /// -2 live or recorded, -1 live only.
    pub start: Option<f64>,
    pub duration: Option<f64>,
    pub reset: Option<bool>,
}

impl Play {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

/// `publish` (spec 04 §7.1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    /// `None` (missing or not a string) means "stop publishing".
    pub name: Option<String>,
    /// `"live"`, `"record"` or `"append"`.
    pub kind: Option<String>,
}

impl Publish {
    pub fn live(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            kind: Some("live".to_owned()),
        }
    }
}

/// Splits `name?query` (spec 04 §7.1) into its parts.
pub fn split_stream_name(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// Parses a `setPeerInfo` address string: `a.b.c.d:port` or `[v6]:port`
/// (spec 04 §5.3). Anything else is `None` (and is to be ignored).
pub fn parse_peer_address(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

/// Formats an address the way `setPeerInfo` and `publicAddress` write it.
pub fn format_peer_address(a: &SocketAddr) -> String {
    a.to_string()
}

/// Commands the TC layer understands, typed (spec 04 §5, §7).
#[derive(Debug, Clone, PartialEq)]
pub enum NetCommand {
    Connect(Connect),
    /// `_result`: values after the command object.
    Result {
        transaction_id: f64,
        /// The command object when it is not null: RTMP servers put their
        /// own properties (`fmsVer`, `capabilities`) there for `connect`.
        properties: Option<Value>,
        values: Vec<Value>,
    },
    /// `_error`: the info object when it is one, and all values.
    Error {
        transaction_id: f64,
        info: Option<StatusInfo>,
        values: Vec<Value>,
    },
    OnStatus(StatusInfo),
    /// Address strings only; non-strings were dropped (spec 04 §5.3).
    SetPeerInfo {
        transaction_id: f64,
        addresses: Vec<String>,
    },
    CreateStream {
        transaction_id: f64,
    },
    DeleteStream {
        stream_id: f64,
    },
    CloseStream,
    Play(Play),
    Publish(Publish),
    /// Anything else, untouched.
    Other(Command),
}

impl NetCommand {
    /// Types a generic command. Unknown names become [`NetCommand::Other`];
    /// known names with unusable arguments are errors.
    pub fn parse(c: &Command) -> Result<Self, CommandError> {
        let tid = c.transaction_id;
        Ok(match c.name.as_str() {
            name::CONNECT => NetCommand::Connect(Connect::from_command(c)?),
            name::RESULT => NetCommand::Result {
                transaction_id: tid,
                properties: c
                    .command_object
                    .clone()
                    .filter(|o| !o.is_null_or_undefined()),
                values: c.args.clone(),
            },
            name::ERROR => NetCommand::Error {
                transaction_id: tid,
                info: c.info_object().and_then(StatusInfo::from_value),
                values: c.args.clone(),
            },
            name::ON_STATUS => {
                let v = c.info_object().ok_or(CommandError::Missing {
                    command: name::ON_STATUS,
                    what: "info object",
                })?;
                NetCommand::OnStatus(StatusInfo::from_value(v).ok_or(CommandError::WrongType {
                    command: name::ON_STATUS,
                    what: "info object",
                })?)
            }
            name::SET_PEER_INFO => NetCommand::SetPeerInfo {
                transaction_id: tid,
                addresses: c
                    .positional_args()
                    .into_iter()
                    .filter_map(Value::to_text)
                    .collect(),
            },
            name::CREATE_STREAM => NetCommand::CreateStream {
                transaction_id: tid,
            },
            name::DELETE_STREAM => {
                let v = *c.positional_args().first().ok_or(CommandError::Missing {
                    command: name::DELETE_STREAM,
                    what: "stream ID",
                })?;
                NetCommand::DeleteStream {
                    stream_id: v.as_f64().ok_or(CommandError::WrongType {
                        command: name::DELETE_STREAM,
                        what: "stream ID",
                    })?,
                }
            }
            name::CLOSE_STREAM => NetCommand::CloseStream,
            name::PLAY => {
                let a = c.positional_args();
                NetCommand::Play(Play {
                    name: a.first().and_then(|v| v.to_text()),
                    start: a.get(1).and_then(|v| v.as_f64()),
                    duration: a.get(2).and_then(|v| v.as_f64()),
                    reset: a.get(3).and_then(|v| v.as_bool()),
                })
            }
            name::PUBLISH => {
                let a = c.positional_args();
                NetCommand::Publish(Publish {
                    name: a.first().and_then(|v| v.to_text()),
                    kind: a.get(1).and_then(|v| v.to_text()),
                })
            }
            _ => NetCommand::Other(c.clone()),
        })
    }

    /// The generic command. Stream commands use tid 0 (spec 04 §7).
    pub fn to_command(&self) -> Command {
        match self {
            NetCommand::Connect(c) => c.to_command(),
            NetCommand::Result {
                transaction_id,
                properties,
                values,
            } => Command {
                command_object: Some(properties.clone().unwrap_or(Value::Null)),
                ..Command::result(*transaction_id, values.iter().cloned())
            },
            NetCommand::Error {
                transaction_id,
                info,
                values,
            } => match (info, values.is_empty()) {
                (Some(i), true) => Command::error(*transaction_id, i),
                _ => Command::new(name::ERROR, *transaction_id).with_args(values.iter().cloned()),
            },
            NetCommand::OnStatus(info) => Command::on_status(info),
            NetCommand::SetPeerInfo {
                transaction_id,
                addresses,
            } => Command::new(name::SET_PEER_INFO, *transaction_id)
                .with_args(addresses.iter().map(|a| Value::str(a.clone()))),
            NetCommand::CreateStream { transaction_id } => {
                Command::new(name::CREATE_STREAM, *transaction_id)
            }
            NetCommand::DeleteStream { stream_id } => {
                Command::new(name::DELETE_STREAM, 0.0).with_args([Value::Number(*stream_id)])
            }
            NetCommand::CloseStream => Command::new(name::CLOSE_STREAM, 0.0),
            NetCommand::Play(p) => {
                let mut args = vec![p.name.clone().map_or(Value::Null, Value::String)];
                // Positional: later arguments force the earlier ones out.
                let start = p
                    .start
                    .or((p.duration.is_some() || p.reset.is_some()).then_some(-2.0));
                let duration = p.duration.or(p.reset.is_some().then_some(-1.0));
                args.extend(start.map(Value::Number));
                args.extend(duration.map(Value::Number));
                args.extend(p.reset.map(Value::Boolean));
                Command::new(name::PLAY, 0.0).with_args(args)
            }
            NetCommand::Publish(p) => {
                let mut args = vec![p.name.clone().map_or(Value::Null, Value::String)];
                args.extend(p.kind.clone().map(Value::String));
                Command::new(name::PUBLISH, 0.0).with_args(args)
            }
            NetCommand::Other(c) => c.clone(),
        }
    }

    /// For a `setPeerInfo`: the addresses that parse; others are ignored.
    pub fn peer_addresses(&self) -> Vec<SocketAddr> {
        match self {
            NetCommand::SetPeerInfo { addresses, .. } => addresses
                .iter()
                .filter_map(|a| parse_peer_address(a))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// For a `_result` to `createStream`: the new stream ID, if it is a
    /// positive integer that fits in 24 bits (spec 04 §5.4).
    pub fn created_stream_id(&self) -> Option<u32> {
        match self {
            NetCommand::Result { values, .. } => {
                let n = values.iter().find_map(Value::as_f64)?;
                (n >= 1.0 && n <= f64::from(super::metadata::STREAM_ID_MASK) && n.fract() == 0.0)
                    .then_some(n as u32)
            }
            _ => None,
        }
    }
}

/// Why a transaction could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransactionError {
    #[error("{0} calls already waiting for a reply")]
    TooManyPending(usize),
}

/// Outstanding `call`s awaiting `_result`/`_error` (spec 04 §5). The first
/// ID handed out is 1 (`connect`), then 2, 3, …; 0 is never used because it
/// means "no reply expected". Pending calls are bounded.
#[derive(Debug, Clone)]
pub struct Transactions<T> {
    next: u32,
    pending: BTreeMap<u32, T>,
    max_pending: usize,
}

impl<T> Transactions<T> {
    pub fn new(max_pending: usize) -> Self {
        Self {
            next: 0,
            pending: BTreeMap::new(),
            max_pending,
        }
    }

    /// Registers a call and returns its transaction ID.
    pub fn begin(&mut self, what: T) -> Result<f64, TransactionError> {
        if self.pending.len() >= self.max_pending {
            return Err(TransactionError::TooManyPending(self.max_pending));
        }
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.pending.contains_key(&self.next) {
                break;
            }
        }
        self.pending.insert(self.next, what);
        Ok(f64::from(self.next))
    }

    /// Matches a reply's transaction ID to its call, removing it.
    pub fn complete(&mut self, transaction_id: f64) -> Option<T> {
        if !(transaction_id >= 1.0
            && transaction_id <= f64::from(u32::MAX)
            && transaction_id.fract() == 0.0)
        {
            return None;
        }
        self.pending.remove(&(transaction_id as u32))
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl<T> Default for Transactions<T> {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// The data message a player gets after `NetStream.Play.Start`:
/// `"|RtmpSampleAccess", true, true` (spec 04 §7.2).
pub fn rtmp_sample_access() -> Vec<Value> {
    vec![
        Value::str(name::RTMP_SAMPLE_ACCESS),
        Value::Boolean(true),
        Value::Boolean(true),
    ]
}

/// What a NetStream data message asks of a server (spec 04 §7.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataFrame<'v> {
    /// `"@setDataFrame", key, …`: store `frame` (from `key` on, i.e. without
    /// the `@setDataFrame` prefix) under `key`, forward it, replay it to new
    /// subscribers.
    Set { key: &'v str, frame: &'v [Value] },
    /// `"@clearDataFrame", key`: forget the stored frame; not forwarded.
    Clear { key: &'v str },
    /// Any other data message: forward as is.
    Forward,
}

/// Classifies the values of a data message (type 18/15).
pub fn data_frame(values: &[Value]) -> DataFrame<'_> {
    match values {
        [h, key, ..] if h.as_str() == Some(name::SET_DATA_FRAME) => match key.as_str() {
            Some(k) => DataFrame::Set {
                key: k,
                frame: &values[1..],
            },
            None => DataFrame::Forward,
        },
        [h, key, ..] if h.as_str() == Some(name::CLEAR_DATA_FRAME) => match key.as_str() {
            Some(k) => DataFrame::Clear { key: k },
            None => DataFrame::Forward,
        },
        _ => DataFrame::Forward,
    }
}
