//! Byte-exact checks against spec 04, `tools/tc_encodings.py` and decrypted
//! librtmfp ↔ MonaServer2 traffic, plus hostile-input properties.

use super::amf0::{self, Limits, Value};
use super::command::{
    self, Command, Connect, Level, NetCommand, Play, Publish, StatusInfo, Transactions, code,
};
use super::message::{self, Body, Message, MessageError, RawMessage, msg_type};
use super::metadata::TcMetadata;
use super::user_control::UserControl;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

fn command_of(bytes: &[u8]) -> Command {
    match Message::parse(bytes).unwrap().body {
        Body::Command {
            amf3: false,
            command,
        } => command,
        other => panic!("not a type 20 command: {other:?}"),
    }
}

fn net(bytes: &[u8]) -> NetCommand {
    NetCommand::parse(&command_of(bytes)).unwrap()
}

fn msg(c: &Command) -> Vec<u8> {
    message::encode_command(c).unwrap()
}

// ---------------------------------------------------------------------------
// Output of `python3 /work/shared/spec/tools/tc_encodings.py` (spec 04 §9.2, §6):
//
// TC message (97): 1400000000020007636f6e6e656374003ff00000000000000300036170700200046c6976650005746355726c02001672746d66703a2f2f6c6f63616c686f73742f6c697665000e6f626a656374456e636f64696e67000000000000000000000009
// metadata: 54430400 option list: 05005443040000
// User Data chunk (111): 10006c80010101050054430400001400000000020007636f6e6e656374003ff0…(as TC message)
// createStream: 140000000002000c63726561746553747265616d00400000000000000005
// _result(createStream): 14000000000200075f726573756c7400400000000000000005003ff0000000000000
// play: 1400000000020004706c6179000000000000000000050200086d7973747265616d
// setPeerInfo: 140000000002000b73657450656572496e666f000000000000000000050200123139322e3136382e312e31303a35303030300200145b323030313a6462383a3a31305d3a3530303030
// TC meta sid1: 54430401  sid2000001: 544304fa8901
// set keepalive UC: 0400000000002900003a9800002710
// flow sync UC: 040000000000220000000700000002
// stream begin UC sid1: 0400000000000000000001
const PY_CONNECT: &str = "1400000000020007636f6e6e656374003ff00000000000000300036170700200046c6976650005746355726c02001672746d66703a2f2f6c6f63616c686f73742f6c697665000e6f626a656374456e636f64696e67000000000000000000000009";
const PY_USER_DATA_HEAD: &str = "10006c80010101050054430400 00";
const PY_CREATE_STREAM: &str = "140000000002000c63726561746553747265616d00400000000000000005";
const PY_RESULT: &str = "14000000000200075f726573756c7400400000000000000005003ff0000000000000";
const PY_PLAY: &str = "1400000000020004706c6179000000000000000000050200086d7973747265616d";
const PY_SET_PEER_INFO: &str = "140000000002000b73657450656572496e666f000000000000000000050200123139322e3136382e312e31303a35303030300200145b323030313a6462383a3a31305d3a3530303030";
const PY_KEEPALIVE: &str = "0400000000002900003a9800002710";
const PY_FLOW_SYNC: &str = "040000000000220000000700000002";
const PY_STREAM_BEGIN: &str = "0400000000000000000001";

// ---------------------------------------------------------------------------
// Decrypted TC messages from /work/shared/vectors/monaserver2/*.out (librtmfp
// TestClient "WIN 20,0,0,286" against MonaServer2), reassembled from their
// User Data chunks. "sent"/"received" is from librtmfp's side.
/// publisher.out, sent by librtmfp flow 2 SN 1, metadata option 0054430400
const CONNECT: &str = concat!(
    "1400000000020007636f6e6e6563740000000000000000000300036170700200046c6976650008666c61736856657202",
    "000e57494e2032302c302c302c323836000673776655726c0200000005746355726c02001672746d66703a2f2f313237",
    "2e302e302e313a313933370004667061640100000c6361706162696c697469657300406d600000000000000b61756469",
    "6f436f646563730040abee0000000000000b766964656f436f6465637300406f800000000000000d766964656f46756e",
    "6374696f6e003ff000000000000000077061676555726c020000000e6f626a656374456e636f64696e67004008000000",
    "000000000009",
);
/// publisher.out, received by librtmfp flow 1 SN 1, metadata option 0054430400
const CONNECT_RESULT: &str = concat!(
    "14000000000200075f726573756c74000000000000000000050300056c6576656c0200067374617475730004636f6465",
    "02001d4e6574436f6e6e656374696f6e2e436f6e6e6563742e53756363657373000b6465736372697074696f6e020014",
    "436f6e6e656374696f6e20737563636565646564000e6f626a656374456e636f64696e67004008000000000000000009",
);
/// publisher.out, received by librtmfp flow 1 SN 2
const SET_KEEPALIVE: &str = "0400000000002900003a9800002710";
/// publisher.out, sent by librtmfp flow 2 SN 2
const SET_PEER_INFO: &str = concat!(
    "140000000002000b73657450656572496e666f00000000000000000002000f3139322e302e322e323a35363933340200",
    "0f5b666430303a3a325d3a3630353635",
);
/// publisher.out, sent by librtmfp flow 2 SN 3
const CREATE_STREAM: &str = "140000000002000c63726561746553747265616d000000000000000000";
/// publisher.out, received by librtmfp flow 1 SN 3
const CREATE_STREAM_RESULT: &str =
    "14000000000200075f726573756c7400000000000000000005003ff0000000000000";
/// publisher.out, sent by librtmfp flow 3 SN 1, metadata option 0054430401
const PUBLISH_AMF3_NAME: &str = "14000000000200077075626c6973680000000000000000000511060974657374";
/// publisher.out, received by librtmfp flow 2 SN 1, metadata option 0054430401
const ON_STATUS_PUBLISH_START: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f64",
    "650200174e657453747265616d2e5075626c6973682e5374617274000b6465736372697074696f6e0200157465737420",
    "6973206e6f77207075626c6973686564000009",
);
/// publisher.out, sent by librtmfp flow 4 SN 1, metadata option 0054430401
const SET_DATA_FRAME: &str = concat!(
    "120000000002000d40736574446174614672616d6502000a6f6e4d65746144617461080000000d00086475726174696f",
    "6e00400066666666666600057769647468004064000000000000000668656967687400405e000000000000000d766964",
    "656f64617461726174650040686a000000000000096672616d6572617465004024000000000000000c766964656f636f",
    "6465636964004000000000000000000d617564696f646174617261746500403f400000000000000f617564696f73616d",
    "706c65726174650040d5888000000000000f617564696f73616d706c6573697a65004030000000000000000673746572",
    "656f0100000c617564696f636f64656369640040000000000000000007656e636f64657202000d4c61766635392e3237",
    "2e313030000866696c6573697a650040e272e000000000000009",
);
/// publisher.out, sent by librtmfp flow 3 SN 2
const CLOSE_STREAM: &str = "140000000002000b636c6f736553747265616d00000000000000000005";
/// player.out, sent by librtmfp flow 3 SN 1, metadata option 0054430401
const PLAY: &str = "1400000000020004706c61790000000000000000000502000474657374";
/// player.out, received by librtmfp flow 2 SN 1, metadata option 0054430401
const STREAM_BEGIN_1: &str = "0400000000000000000001";
/// player.out, received by librtmfp flow 2 SN 2
const ON_STATUS_PLAY_RESET: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f64",
    "650200144e657453747265616d2e506c61792e5265736574000b6465736372697074696f6e02001a506c6179696e6720",
    "616e6420726573657474696e672074657374000009",
);
/// player.out, received by librtmfp flow 2 SN 3
const ON_STATUS_PLAY_START: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f64",
    "650200144e657453747265616d2e506c61792e5374617274000b6465736372697074696f6e0200145374617274656420",
    "706c6179696e672074657374000009",
);
/// player.out, received by librtmfp flow 2 SN 4
const RTMP_SAMPLE_ACCESS: &str = "12000000000200117c52746d7053616d706c6541636365737301010101";
/// player.out, received by librtmfp flow 2 SN 5
const ON_STATUS_PUBLISH_NOTIFY: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f64",
    "6502001c4e657453747265616d2e506c61792e5075626c6973684e6f74696679000b6465736372697074696f6e020015",
    "74657374206973206e6f77207075626c6973686564000009",
);
/// player.out, received by librtmfp flow 2 SN 6
const ON_META_DATA: &str = concat!(
    "120000000002000a6f6e4d65746144617461080000000d00086475726174696f6e004000666666666666000577696474",
    "68004064000000000000000668656967687400405e000000000000000d766964656f64617461726174650040686a0000",
    "00000000096672616d6572617465004024000000000000000c766964656f636f6465636964004000000000000000000d",
    "617564696f646174617261746500403f400000000000000f617564696f73616d706c65726174650040d5888000000000",
    "000f617564696f73616d706c6573697a65004030000000000000000673746572656f0100000c617564696f636f646563",
    "69640040000000000000000007656e636f64657202000d4c61766635392e32372e313030000866696c6573697a650040",
    "e272e000000000000009",
);
/// player.out, received by librtmfp flow 2 SN 119
const ON_STATUS_UNPUBLISH_NOTIFY: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f64",
    "6502001e4e657453747265616d2e506c61792e556e7075626c6973684e6f74696679000b6465736372697074696f6e02",
    "001774657374206973206e6f7720756e7075626c6973686564000009",
);
/// p2p_publisher.out, received by librtmfp flow 2 SN 1, metadata option 00544304fa8901
const P2P_PLAY: &str = "1400000000020004706c61790000000000000000000502000474657374";
/// p2p_publisher.out, sent by librtmfp flow 2 SN 1, metadata option 00544304fa8901
const P2P_STREAM_BEGIN: &str = "04000000000000001e8481";
/// p2p_publisher.out, sent by librtmfp flow 2 SN 2
const P2P_ON_STATUS_NO_NULL: &str = concat!(
    "14000000000200086f6e5374617475730000000000000000000300056c6576656c0200067374617475730004636f6465",
    "0200144e657453747265616d2e506c61792e5265736574000b6465736372697074696f6e02001a506c6179696e672061",
    "6e6420726573657474696e672074657374000009",
);
/// publisher.out, client->server flow 5 SN 1 (first 32 bytes + length)
const AUDIO_FIRST: (&str, usize) = (
    "08000000002afff340c400133062843f4f18000bd6dbb60879a6699a669a1ee6",
    110,
);
/// publisher.out, client->server flow 6 SN 6 (first 32 bytes + length)
const VIDEO_FIRST: (&str, usize) = (
    "09000000321200008403122620202021fffee8c4180630608281847a06981544",
    6245,
);

/// monaserver_dump.log (MonaServer2's own decrypted view), server to the
/// publisher after closeStream; the only TC message in it that the
/// client-side transcripts do not also show.
const ON_STATUS_UNPUBLISH_SUCCESS: &str = concat!(
    "14000000000200086f6e537461747573000000000000000000050300056c6576656c0200067374617475730004636f",
    "646502001b4e657453747265616d2e556e7075626c6973682e53756363657373000b6465736372697074696f6e0200",
    "1774657374206973206e6f7720756e7075626c6973686564000009",
);

/// Metadata option values seen in the same transcripts (option type 0x00
/// then the metadata; spec 04 §2): control flows, stream 1, P2P stream.
const CAPTURED_METADATA_OPTIONS: [(&str, u64); 3] = [
    ("0054430400", 0),
    ("0054430401", 1),
    ("00544304fa8901", 2_000_001),
];

#[test]
fn spec_connect_message_byte_exact() {
    let c = Connect::new("live", "rtmfp://localhost/live");
    let b = msg(&c.to_command());
    assert_eq!(b, hex(PY_CONNECT));
    assert_eq!(b.len(), 97);
    // spec 04 §9.2 text form of the same message.
    assert_eq!(
        b,
        hex("14 00000000 020007636f6e6e656374 003ff0000000000000
             03 0003617070 0200046c697665
                0005746355726c 02001672746d66703a2f2f6c6f63616c686f73742f6c697665
                000e6f626a656374456e636f64696e67 000000000000000000
                000009")
    );
    match net(&b) {
        NetCommand::Connect(p) => assert_eq!(p, c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn spec_first_user_data_chunk_carries_metadata_then_message() {
    // 10 006c | 80 01 01 01 | 05 00 <54 43 04 00> 00 | message
    let mut chunk = hex(PY_USER_DATA_HEAD);
    chunk.extend(msg(
        &Connect::new("live", "rtmfp://localhost/live").to_command()
    ));
    assert_eq!(chunk.len(), 111);
    assert_eq!(
        usize::from(u16::from_be_bytes([chunk[1], chunk[2]])),
        chunk.len() - 3
    );
    assert_eq!(&chunk[9..13], TcMetadata::new(0).to_bytes().as_slice());
    assert_eq!(chunk[7], 1 + 4, "option length covers type + metadata");
    assert_eq!(
        Message::parse(&chunk[14..]).unwrap().msg_type(),
        msg_type::COMMAND
    );
}

#[test]
fn tc_encodings_py_fixtures() {
    assert_eq!(
        msg(&NetCommand::CreateStream {
            transaction_id: 2.0
        }
        .to_command()),
        hex(PY_CREATE_STREAM)
    );
    assert_eq!(
        msg(&NetCommand::Result {
            transaction_id: 2.0,
            properties: None,
            values: vec![Value::Number(1.0)]
        }
        .to_command()),
        hex(PY_RESULT)
    );
    assert_eq!(
        msg(&NetCommand::Play(Play::new("mystream")).to_command()),
        hex(PY_PLAY)
    );
    let spi = NetCommand::SetPeerInfo {
        transaction_id: 0.0,
        addresses: vec!["192.168.1.10:50000".into(), "[2001:db8::10]:50000".into()],
    };
    assert_eq!(msg(&spi.to_command()), hex(PY_SET_PEER_INFO));
    assert_eq!(
        net(&hex(PY_SET_PEER_INFO)).peer_addresses(),
        vec![
            "192.168.1.10:50000".parse().unwrap(),
            "[2001:db8::10]:50000".parse().unwrap()
        ]
    );
    assert_eq!(
        UserControl::SetKeepalive {
            server_ms: 15000,
            peer_ms: 10000
        }
        .to_message(),
        hex(PY_KEEPALIVE)
    );
    assert_eq!(
        UserControl::FlowSync {
            sync_id: 7,
            count: 2
        }
        .to_message(),
        hex(PY_FLOW_SYNC)
    );
    assert_eq!(
        UserControl::StreamBegin(1).to_message(),
        hex(PY_STREAM_BEGIN)
    );
    assert_eq!(net(&hex(PY_RESULT)).created_stream_id(), Some(1));
    for h in [
        PY_CONNECT,
        PY_CREATE_STREAM,
        PY_RESULT,
        PY_PLAY,
        PY_SET_PEER_INFO,
        PY_KEEPALIVE,
        PY_FLOW_SYNC,
        PY_STREAM_BEGIN,
    ] {
        let b = hex(h);
        assert_eq!(Message::parse(&b).unwrap().to_vec().unwrap(), b, "{h}");
    }
}

const CAPTURED: &[&str] = &[
    CONNECT,
    CONNECT_RESULT,
    SET_KEEPALIVE,
    SET_PEER_INFO,
    CREATE_STREAM,
    CREATE_STREAM_RESULT,
    PUBLISH_AMF3_NAME,
    ON_STATUS_PUBLISH_START,
    SET_DATA_FRAME,
    CLOSE_STREAM,
    PLAY,
    STREAM_BEGIN_1,
    ON_STATUS_PLAY_RESET,
    ON_STATUS_PLAY_START,
    RTMP_SAMPLE_ACCESS,
    ON_STATUS_PUBLISH_NOTIFY,
    ON_META_DATA,
    ON_STATUS_UNPUBLISH_NOTIFY,
    P2P_PLAY,
    P2P_STREAM_BEGIN,
    P2P_ON_STATUS_NO_NULL,
    ON_STATUS_UNPUBLISH_SUCCESS,
];

#[test]
fn captured_messages_round_trip_byte_exact() {
    for h in CAPTURED {
        let b = hex(h);
        let m = Message::parse(&b).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(m.timestamp, 0);
        assert_eq!(m.to_vec().unwrap(), b, "{m:?}");
    }
}

#[test]
fn captured_flash_connect() {
    let b = hex(CONNECT);
    let NetCommand::Connect(c) = net(&b) else {
        panic!()
    };
    // librtmfp uses transaction 0 for connect, unlike Flash and the reference (1).
    assert_eq!(c.transaction_id, 0.0);
    assert_eq!(c.app.as_deref(), Some("live"));
    assert_eq!(c.flash_ver.as_deref(), Some("WIN 20,0,0,286"));
    assert_eq!(c.swf_url.as_deref(), Some(""));
    assert_eq!(c.tc_url.as_deref(), Some("rtmfp://127.0.0.1:1937"));
    assert_eq!(c.fpad, Some(false));
    assert_eq!(c.capabilities, Some(235.0));
    assert_eq!(c.audio_codecs, Some(3575.0));
    assert_eq!(c.video_codecs, Some(252.0));
    assert_eq!(c.video_function, Some(1.0));
    assert_eq!(c.page_url.as_deref(), Some(""));
    assert_eq!(c.object_encoding, Some(3.0));
    assert!(c.extra.is_empty() && c.args.is_empty());
    // The Flash builder reproduces it byte for byte.
    let built = Connect {
        transaction_id: 0.0,
        ..Connect::flash("live", "rtmfp://127.0.0.1:1937", "WIN 20,0,0,286")
    };
    assert_eq!(msg(&built.to_command()), b);
}

#[test]
fn captured_server_replies_rebuild_byte_exact() {
    let NetCommand::Result {
        transaction_id,
        values,
        ..
    } = net(&hex(CONNECT_RESULT))
    else {
        panic!()
    };
    assert_eq!(transaction_id, 0.0);
    let info = StatusInfo::from_value(&values[0]).unwrap();
    assert_eq!(
        (info.level.clone(), info.code.as_str()),
        (Level::Status, code::CONNECT_SUCCESS)
    );
    assert_eq!(info.get("objectEncoding"), Some(&Value::Number(3.0)));
    let rebuilt = Command::result(
        0.0,
        [StatusInfo::connect_success("Connection succeeded", 3.0).to_value()],
    );
    assert_eq!(msg(&rebuilt), hex(CONNECT_RESULT));

    for (h, code, description) in [
        (
            ON_STATUS_PUBLISH_START,
            code::PUBLISH_START,
            "test is now published",
        ),
        (
            ON_STATUS_PLAY_RESET,
            code::PLAY_RESET,
            "Playing and resetting test",
        ),
        (
            ON_STATUS_PLAY_START,
            code::PLAY_START,
            "Started playing test",
        ),
        (
            ON_STATUS_PUBLISH_NOTIFY,
            code::PLAY_PUBLISH_NOTIFY,
            "test is now published",
        ),
        (
            ON_STATUS_UNPUBLISH_NOTIFY,
            code::PLAY_UNPUBLISH_NOTIFY,
            "test is now unpublished",
        ),
        (
            ON_STATUS_UNPUBLISH_SUCCESS,
            code::UNPUBLISH_SUCCESS,
            "test is now unpublished",
        ),
    ] {
        let NetCommand::OnStatus(info) = net(&hex(h)) else {
            panic!("{h}")
        };
        assert_eq!(info.code, code);
        assert_eq!(info.description.as_deref(), Some(description));
        let built =
            Command::on_status(&StatusInfo::new(Level::Status, code).description(description));
        assert_eq!(msg(&built), hex(h), "{code}");
    }

    let NetCommand::Result { .. } = net(&hex(CREATE_STREAM_RESULT)) else {
        panic!()
    };
    assert_eq!(net(&hex(CREATE_STREAM_RESULT)).created_stream_id(), Some(1));
    assert_eq!(
        UserControl::parse(&hex(SET_KEEPALIVE)[5..]).unwrap(),
        UserControl::SetKeepalive {
            server_ms: 15000,
            peer_ms: 10000
        }
    );
}

#[test]
fn captured_client_commands() {
    // setPeerInfo without the null command object.
    let spi = net(&hex(SET_PEER_INFO));
    assert_eq!(
        spi,
        NetCommand::SetPeerInfo {
            transaction_id: 0.0,
            addresses: vec!["192.0.2.2:56934".into(), "[fd00::2]:60565".into()]
        }
    );
    assert_eq!(spi.peer_addresses().len(), 2);
    // createStream without a command object still round trips exactly.
    let cs = command_of(&hex(CREATE_STREAM));
    assert_eq!(cs.command_object, None);
    assert_eq!(
        NetCommand::parse(&cs).unwrap(),
        NetCommand::CreateStream {
            transaction_id: 0.0
        }
    );
    // publish name sent as an AMF3 string behind 0x11.
    let p = command_of(&hex(PUBLISH_AMF3_NAME));
    assert!(matches!(p.args[0], Value::AvmPlus(_)));
    assert_eq!(
        NetCommand::parse(&p).unwrap(),
        NetCommand::Publish(Publish {
            name: Some("test".into()),
            kind: None
        })
    );
    assert_eq!(net(&hex(CLOSE_STREAM)), NetCommand::CloseStream);
    assert_eq!(net(&hex(PLAY)), NetCommand::Play(Play::new("test")));
    assert_eq!(
        msg(&NetCommand::Play(Play::new("test")).to_command()),
        hex(PLAY)
    );
    assert_eq!(hex(P2P_PLAY), hex(PLAY));
    assert_eq!(
        msg(&NetCommand::CloseStream.to_command()),
        hex(CLOSE_STREAM)
    );
}

#[test]
fn captured_p2p_and_data() {
    assert_eq!(
        Message::parse(&hex(P2P_STREAM_BEGIN)).unwrap().body,
        Body::UserControl(UserControl::StreamBegin(2_000_001))
    );
    assert_eq!(
        Message::parse(&hex(STREAM_BEGIN_1)).unwrap().body,
        Body::UserControl(UserControl::StreamBegin(1))
    );
    // librtmfp's P2P publisher leaves out the null: the info object is the command object.
    let NetCommand::OnStatus(info) = net(&hex(P2P_ON_STATUS_NO_NULL)) else {
        panic!()
    };
    assert_eq!(info.code, code::PLAY_RESET);

    let Body::Data {
        amf3: false,
        values,
    } = Message::parse(&hex(RTMP_SAMPLE_ACCESS)).unwrap().body
    else {
        panic!()
    };
    assert_eq!(
        values,
        vec![
            Value::str(command::name::RTMP_SAMPLE_ACCESS),
            Value::Boolean(true),
            Value::Boolean(true)
        ]
    );
    assert_eq!(
        Message::data(0, values).to_vec().unwrap(),
        hex(RTMP_SAMPLE_ACCESS)
    );

    let Body::Data { values, .. } = Message::parse(&hex(SET_DATA_FRAME)).unwrap().body else {
        panic!()
    };
    assert_eq!(values[0].as_str(), Some(command::name::SET_DATA_FRAME));
    assert_eq!(values[1].as_str(), Some(command::name::ON_META_DATA));
    assert_eq!(values[2].members().map(<[_]>::len), Some(13));
    assert_eq!(values[2].get("width"), Some(&Value::Number(160.0)));
    assert_eq!(
        values[2].get("encoder").and_then(Value::as_str),
        Some("Lavf59.27.100")
    );

    // What the server forwards is the same frame without "@setDataFrame".
    let Body::Data { values: fwd, .. } = Message::parse(&hex(ON_META_DATA)).unwrap().body else {
        panic!()
    };
    assert_eq!(fwd[..], values[1..]);
    let json = Value::StrictArray(fwd).to_json();
    assert!(
        json.starts_with(r#"["onMetaData",{"duration":2.05,"width":160,"height":120,"#),
        "{json}"
    );
}

#[test]
fn captured_media_messages_stay_borrowed() {
    for ((h, len), t) in [
        (AUDIO_FIRST, msg_type::AUDIO),
        (VIDEO_FIRST, msg_type::VIDEO),
    ] {
        let mut b = hex(h);
        b.resize(len, 0);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.msg_type(), t);
        match m.body {
            Body::Audio(p) | Body::Video(p) => assert!(std::ptr::eq(p.as_ptr(), b[5..].as_ptr())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(Message::parse(&hex(VIDEO_FIRST.0)).unwrap().timestamp, 50);
}

#[test]
fn every_prefix_errors_or_reencodes_to_itself() {
    let mut all: Vec<Vec<u8>> = CAPTURED.iter().map(|h| hex(h)).collect();
    all.extend([PY_CONNECT, PY_SET_PEER_INFO, PY_KEEPALIVE].map(hex));
    for b in all {
        for n in 0..b.len() {
            let p = &b[..n];
            if let Ok(m) = Message::parse(p) {
                // A cut between two values leaves a shorter valid message.
                assert_eq!(m.to_vec().unwrap(), p, "prefix {n} of {b:02x?}");
            }
        }
        assert!(Message::parse(&b[..4]).is_err());
    }
}

#[test]
fn amf3_command_and_data_types() {
    // Type 17: format byte 00 then the usual command.
    let mut b = vec![msg_type::COMMAND_AMF3, 0, 0, 0, 9, 0x00];
    b.extend(&hex(PY_CREATE_STREAM)[5..]);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.timestamp, 9);
    let Body::Command {
        amf3: true,
        command,
    } = &m.body
    else {
        panic!()
    };
    assert_eq!(command.name, "createStream");
    assert_eq!(m.to_vec().unwrap(), b);
    // Type 15 without the format byte is accepted (spec 04 §4 leniency).
    let mut d = vec![msg_type::DATA_AMF3, 0, 0, 0, 0];
    d.extend(&hex(RTMP_SAMPLE_ACCESS)[5..]);
    let Body::Data { amf3: true, values } = Message::parse(&d).unwrap().body else {
        panic!()
    };
    assert_eq!(values.len(), 3);
    assert_eq!(
        Message::parse(&[0x0f, 0, 0, 0, 0, 0x03]),
        Err(MessageError::UnsupportedFormat(0x03))
    );
    assert_eq!(
        Message::parse(&[0x11, 0, 0, 0, 0]),
        Err(MessageError::MissingFormat(0x11))
    );
}

#[test]
fn message_errors() {
    assert_eq!(
        RawMessage::parse(&[0x14, 0, 0, 0]),
        Err(MessageError::ShortHeader)
    );
    assert_eq!(
        Message::parse(&[0x14, 0, 0, 0, 0, 0x05]),
        Err(MessageError::NotACommand)
    );
    assert_eq!(
        Message::parse(&[0x14, 0, 0, 0, 0, 0x02, 0x00, 0x01, b'x']),
        Err(MessageError::NotACommand)
    );
    assert!(matches!(
        Message::parse(&[0x12, 0, 0, 0, 0, 0x09]),
        Err(MessageError::Amf(amf0::AmfError::UnexpectedObjectEnd))
    ));
    assert!(matches!(
        Message::parse(&[0x04, 0, 0, 0, 0, 0x00]),
        Err(MessageError::UserControl(_))
    ));
    let tight = Limits {
        max_size: 8,
        ..Limits::default()
    };
    assert_eq!(
        Message::parse_with(&[0x08; 9], tight),
        Err(MessageError::TooLarge { size: 9, limit: 8 })
    );
    let other = Message::parse(&[0x13, 0, 0, 0, 1, 0xaa]).unwrap();
    assert_eq!(
        other.body,
        Body::Other {
            msg_type: 0x13,
            payload: &[0xaa]
        }
    );
    assert!(!msg_type::allowed_over_rtmfp(msg_type::SET_CHUNK_SIZE));
    assert!(msg_type::allowed_over_rtmfp(msg_type::COMMAND));
    let raw = RawMessage {
        msg_type: 8,
        timestamp: 0x01020304,
        payload: &[0xaf, 0x01],
    };
    assert_eq!(raw.to_vec(), [8, 1, 2, 3, 4, 0xaf, 0x01]);
}

#[test]
fn timestamps_wrap() {
    assert!(message::timestamp_after(1, 0));
    assert!(message::timestamp_after(5, u32::MAX - 5));
    assert!(!message::timestamp_after(0, 1));
    assert!(!message::timestamp_after(7, 7));
    assert!(!message::timestamp_after(0x8000_0000, 0));
}

#[test]
fn typed_command_round_trips() {
    let cmds = [
        NetCommand::Connect(Connect {
            extra: vec![("capsEx".into(), Value::Number(0.0))],
            args: vec![Value::str("token")],
            ..Connect::new("live", "rtmfp://h/live")
        }),
        NetCommand::Result {
            transaction_id: 5.0,
            properties: None,
            values: vec![Value::Number(1.0)],
        },
        NetCommand::Error {
            transaction_id: 1.0,
            info: Some(StatusInfo::connect_rejected("nope")),
            values: vec![StatusInfo::connect_rejected("nope").to_value()],
        },
        NetCommand::OnStatus(
            StatusInfo::new(Level::Warning, "X.Y")
                .detail("d")
                .with("n", Value::Number(2.0)),
        ),
        NetCommand::SetPeerInfo {
            transaction_id: 0.0,
            addresses: vec!["1.2.3.4:5".into()],
        },
        NetCommand::CreateStream {
            transaction_id: 3.0,
        },
        NetCommand::DeleteStream { stream_id: 1.0 },
        NetCommand::CloseStream,
        NetCommand::Play(Play {
            name: Some("a".into()),
            start: Some(-2.0),
            duration: Some(-1.0),
            reset: Some(true),
        }),
        NetCommand::Play(Play {
            name: None,
            ..Play::default()
        }),
        NetCommand::Publish(Publish::live("s")),
        NetCommand::Publish(Publish::default()),
        NetCommand::Other(Command::new("FCPublish", 4.0).with_args([Value::str("s")])),
    ];
    for c in cmds {
        let bytes = msg(&c.to_command());
        assert_eq!(net(&bytes), c);
    }
    // Positional play arguments are filled in when later ones are given.
    let p = NetCommand::Play(Play {
        reset: Some(false),
        ..Play::new("x")
    })
    .to_command();
    assert_eq!(
        p.args,
        vec![
            Value::str("x"),
            Value::Number(-2.0),
            Value::Number(-1.0),
            Value::Boolean(false)
        ]
    );
}

#[test]
fn command_parse_errors_and_helpers() {
    use command::CommandError;
    let bad = Command::new("connect", 1.0);
    assert_eq!(
        NetCommand::parse(&bad),
        Err(CommandError::WrongType {
            command: "connect",
            what: "command object"
        })
    );
    let bad = Command {
        command_object: None,
        ..Command::new("connect", 1.0)
    };
    assert_eq!(
        NetCommand::parse(&bad),
        Err(CommandError::Missing {
            command: "connect",
            what: "command object"
        })
    );
    assert!(NetCommand::parse(&Command::new("deleteStream", 0.0)).is_err());
    assert!(
        NetCommand::parse(&Command::new("deleteStream", 0.0).with_args([Value::Null])).is_err()
    );
    assert!(NetCommand::parse(&Command::new("onStatus", 0.0)).is_err());
    assert!(
        NetCommand::parse(
            &Command::new("onStatus", 0.0)
                .with_args([Value::object([("level", Value::str("status"))])])
        )
        .is_err()
    );

    // Wrong-typed known keys are not lost.
    let c = Command::new("connect", 1.0);
    let c = Command {
        command_object: Some(Value::object([
            ("app", Value::Number(1.0)),
            ("app", Value::str("x")),
        ])),
        ..c
    };
    let NetCommand::Connect(p) = NetCommand::parse(&c).unwrap() else {
        panic!()
    };
    assert_eq!(p.app.as_deref(), Some("x"));
    assert_eq!(p.extra_value("app"), Some(&Value::Number(1.0)));

    assert_eq!(
        Connect {
            app: None,
            ..Connect::new("", "rtmfp://host:1935/live/x")
        }
        .app_name()
        .as_deref(),
        Some("live/x")
    );
    assert_eq!(
        Connect {
            app: None,
            ..Connect::new("", "rtmfp://host")
        }
        .app_name()
        .as_deref(),
        Some("")
    );
    assert_eq!(
        command::split_stream_name("cam?token=1"),
        ("cam", "token=1")
    );
    assert_eq!(command::split_stream_name("cam"), ("cam", ""));
    assert_eq!(command::parse_peer_address("nonsense"), None);

    let unknown = Command::new("frobnicate", 3.0);
    let reply = Command::call_failed(&unknown);
    assert_eq!(reply.name, "_error");
    assert_eq!(reply.transaction_id, 3.0);
    let info = StatusInfo::from_value(&reply.args[0]).unwrap();
    assert_eq!(
        (info.level, info.code.as_str(), info.detail.as_deref()),
        (Level::Error, code::CALL_FAILED, Some("frobnicate"))
    );
    assert_eq!(
        Command::call_failed(&Command::new("frobnicate", 0.0)).name,
        "onStatus"
    );

    assert_eq!(
        NetCommand::Result {
            transaction_id: 2.0,
            properties: None,
            values: vec![Value::Number(0.0)]
        }
        .created_stream_id(),
        None
    );
    assert_eq!(
        NetCommand::Result {
            transaction_id: 2.0,
            properties: None,
            values: vec![Value::Number(1.5)]
        }
        .created_stream_id(),
        None
    );
    assert_eq!(
        NetCommand::Result {
            transaction_id: 2.0,
            properties: None,
            values: vec![Value::Null, Value::Number(7.0)]
        }
        .created_stream_id(),
        Some(7)
    );
}

#[test]
fn transactions_start_at_connect_and_are_bounded() {
    let mut t = Transactions::new(2);
    assert_eq!(t.begin("connect"), Ok(command::CONNECT_TRANSACTION_ID));
    assert_eq!(t.begin("createStream"), Ok(2.0));
    assert_eq!(
        t.begin("x"),
        Err(command::TransactionError::TooManyPending(2))
    );
    assert_eq!(t.complete(2.0), Some("createStream"));
    assert_eq!(t.complete(2.0), None);
    for bogus in [0.0, -1.0, 1.5, f64::NAN, 1e300] {
        assert_eq!(t.complete(bogus), None);
    }
    assert_eq!(t.begin("y"), Ok(3.0));
    assert_eq!(t.pending(), 2);
}

proptest! {
    #[test]
    fn arbitrary_messages_never_panic(t in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut b = vec![t, 0, 0, 0, 0];
        b.extend(body);
        if let Ok(m) = Message::parse(&b) {
            let _ = m.to_vec();
            if let Body::Command { command, .. } = &m.body {
                let _ = NetCommand::parse(command);
            }
        }
    }

    #[test]
    fn mutated_captures_never_panic(i in 0usize..CAPTURED.len(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut b = hex(CAPTURED[i]);
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x;
        }
        if let Ok(Message { body: Body::Command { command, .. }, .. }) = Message::parse(&b) {
            let _ = NetCommand::parse(&command).map(|c| c.to_command());
        }
    }

    #[test]
    fn commands_round_trip(name in "[a-zA-Z_]{1,12}", tid in 0u32..1000, args in proptest::collection::vec(".{0,8}", 0..4)) {
        let c = Command::new(name, f64::from(tid)).with_args(args.into_iter().map(Value::String));
        let b = msg(&c);
        prop_assert_eq!(command_of(&b), c);
    }
}

/// tcserver's connect reply and PublishNotify as tcconn logged them
/// (/work/shared/vectors/rtmfp-cpp/p2p_intro.peerA.log and
/// publish_play_tcserver.tcconn.log). The reference writes keys sorted
/// (std::map); `priority` is -inf, which JSON cannot carry.
#[test]
fn rtmfp_cpp_logged_status_objects() {
    let fp = "f84e30c6b6de290408b3c641cfa66071f8fc0d912a7ad2445c3c2ecf809423e6";
    let server = "c1c6970032d3f505a898721019449dc81a62b97f1319048c0030f52ae44d6b23";
    let star4 = || Value::object([("*", Value::Number(4.0))]);
    let connect = Value::object([
        ("audioFourCcInfoMap", star4()),
        ("capsEx", Value::Number(0.0)),
        ("code", Value::str(code::CONNECT_SUCCESS)),
        ("connectionID", Value::str(fp)),
        ("description", Value::str("you connected!")),
        ("fourCcList", Value::StrictArray(vec![Value::str("*")])),
        ("level", Value::str("status")),
        ("objectEncoding", Value::Number(0.0)),
        ("serverFingerprint", Value::str(server)),
        ("videoFourCcInfoMap", star4()),
    ]);
    let bytes = msg(&Command::result(1.0, [connect.clone()]));
    let NetCommand::Result {
        transaction_id,
        values,
        ..
    } = net(&bytes)
    else {
        panic!()
    };
    assert_eq!((transaction_id, &values[..]), (1.0, &[connect][..]));
    let info = StatusInfo::from_value(&values[0]).unwrap();
    assert_eq!(info.code, code::CONNECT_SUCCESS);
    assert_eq!(info.get("connectionID").and_then(Value::as_str), Some(fp));
    let logged = serde_json::json!({
        "audioFourCcInfoMap": {"*": 4}, "capsEx": 0, "code": "NetConnection.Connect.Success",
        "connectionID": fp, "description": "you connected!", "fourCcList": ["*"], "level": "status",
        "objectEncoding": 0, "serverFingerprint": server, "videoFourCcInfoMap": {"*": 4}
    });
    let ours: serde_json::Value = serde_json::from_str(&values[0].to_json()).unwrap();
    assert_eq!(ours, logged);

    let notify = StatusInfo::new(Level::Status, code::PLAY_PUBLISH_NOTIFY)
        .description("being published")
        .detail("short3s")
        .with("priority", Value::Number(f64::NEG_INFINITY))
        .with(
            "publisher",
            Value::str("4dbf840cb8220c31b202c65500b0ed3d5beab88f9f7a136d11fbc573393e3b89"),
        );
    let b = msg(&Command::on_status(&notify));
    let NetCommand::OnStatus(back) = net(&b) else {
        panic!()
    };
    assert_eq!(back, notify);
    assert_eq!(
        back.get("priority").and_then(Value::as_f64),
        Some(f64::NEG_INFINITY)
    );
    assert!(notify.to_value().to_json().contains(r#""priority":null"#));
}

fn arb_json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(Value::Number),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        Just(Value::Null),
        Just(Value::Undefined),
        any::<u16>().prop_map(Value::Reference),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::AvmPlus),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec((any::<String>(), inner.clone()), 0..4)
                .prop_map(Value::Object),
            proptest::collection::vec(inner, 0..4).prop_map(Value::StrictArray),
        ]
    })
}

proptest! {
    #[test]
    fn to_json_is_always_valid_json(v in arb_json_value()) {
        let j = v.to_json();
        prop_assert!(serde_json::from_str::<serde_json::Value>(&j).is_ok(), "{}", j);
    }
}

#[test]
fn data_frames_for_relays() {
    use command::{DataFrame, data_frame};
    let Body::Data { values, .. } = Message::parse(&hex(SET_DATA_FRAME)).unwrap().body else {
        panic!()
    };
    let Body::Data {
        values: forwarded, ..
    } = Message::parse(&hex(ON_META_DATA)).unwrap().body
    else {
        panic!()
    };
    match data_frame(&values) {
        DataFrame::Set { key, frame } => {
            assert_eq!(key, "onMetaData");
            // What Mona stored and forwarded to the player, byte for byte.
            assert_eq!(
                Message::data(0, frame.to_vec()).to_vec().unwrap(),
                hex(ON_META_DATA)
            );
            assert_eq!(frame, &forwarded[..]);
        }
        other => panic!("{other:?}"),
    }
    let clear = [Value::str("@clearDataFrame"), Value::str("onMetaData")];
    assert_eq!(data_frame(&clear), DataFrame::Clear { key: "onMetaData" });
    assert_eq!(data_frame(&forwarded), DataFrame::Forward);
    assert_eq!(
        data_frame(&[Value::str("@setDataFrame"), Value::Null]),
        DataFrame::Forward
    );
    assert_eq!(
        data_frame(&[Value::str("@setDataFrame")]),
        DataFrame::Forward
    );
    assert_eq!(data_frame(&[]), DataFrame::Forward);
}

#[test]
fn rtmp_style_connect_result_keeps_server_properties() {
    let props = Value::object([
        ("fmsVer", Value::str("FMS/3,5,7,7009")),
        ("capabilities", Value::Number(31.0)),
    ]);
    let info = StatusInfo::connect_success("ok", 3.0).to_value();
    let c = Command {
        command_object: Some(props.clone()),
        ..Command::result(1.0, [info.clone()])
    };
    let b = msg(&c);
    let parsed = net(&b);
    assert_eq!(
        parsed,
        NetCommand::Result {
            transaction_id: 1.0,
            properties: Some(props),
            values: vec![info]
        }
    );
    assert_eq!(msg(&parsed.to_command()), b);
}

#[test]
fn captured_metadata_options() {
    for (h, sid) in CAPTURED_METADATA_OPTIONS {
        let opt = hex(h);
        assert_eq!(opt[0], 0x00, "metadata option type");
        let md = TcMetadata::parse(&opt[1..]).unwrap();
        assert_eq!(md, TcMetadata::new(sid));
        assert_eq!(md.to_bytes(), opt[1..]);
    }
}

#[test]
fn stream_event_levels_and_play_sequence() {
    let reset = StatusInfo::stream_event(code::PLAY_RESET, "Reset", "cam");
    assert_eq!(
        (reset.level.clone(), reset.detail.as_deref()),
        (Level::Status, Some("cam"))
    );
    for c in [
        code::PUBLISH_BAD_NAME,
        code::PLAY_STREAM_NOT_FOUND,
        code::PLAY_FAILED,
    ] {
        assert_eq!(
            StatusInfo::stream_event(c, "", "x").level,
            Level::Error,
            "{c}"
        );
    }
    // tcserver's answer to play, spec 04 §7.2 steps 1-4, as a server would queue it.
    let seq = [
        UserControl::StreamBegin(1).to_message(),
        msg(&Command::on_status(&reset)),
        msg(&Command::on_status(&StatusInfo::stream_event(
            code::PLAY_START,
            "Subscribe",
            "cam",
        ))),
        Message::data(0, command::rtmp_sample_access())
            .to_vec()
            .unwrap(),
    ];
    assert_eq!(seq[0], hex(STREAM_BEGIN_1));
    assert_eq!(seq[3], hex(RTMP_SAMPLE_ACCESS));
    let NetCommand::OnStatus(start) = net(&seq[2]) else {
        panic!()
    };
    assert_eq!(
        (start.code.as_str(), start.description.as_deref()),
        (code::PLAY_START, Some("Subscribe"))
    );
}

#[test]
fn stream_commands_without_the_null_still_parse() {
    let omit = |name: &str, args: Vec<Value>| {
        let mut it = args.into_iter();
        Command {
            command_object: it.next(),
            args: it.collect(),
            ..Command::new(name, 0.0)
        }
    };
    let p = omit("play", vec![Value::str("cam"), Value::Number(-1.0)]);
    assert_eq!(
        NetCommand::parse(&p).unwrap(),
        NetCommand::Play(Play {
            start: Some(-1.0),
            ..Play::new("cam")
        })
    );
    let d = omit("deleteStream", vec![Value::Number(3.0)]);
    assert_eq!(
        NetCommand::parse(&d).unwrap(),
        NetCommand::DeleteStream { stream_id: 3.0 }
    );
    let p = omit("publish", vec![Value::str("cam"), Value::str("live")]);
    assert_eq!(
        NetCommand::parse(&p).unwrap(),
        NetCommand::Publish(Publish::live("cam"))
    );
    // A real null (or an object) in that slot is not an argument.
    let p = Command::new("play", 0.0).with_args([Value::str("x")]);
    assert_eq!(p.positional_args(), vec![&Value::str("x")]);
}
