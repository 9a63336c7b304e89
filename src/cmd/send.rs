//! `rtmfp send URL HANDLER [ARG...]`: data messages on a stream
//! (NetStream.send semantics): arguments are JSON values sent as AMF0.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use serde_json::{Value as Json, json};

use super::peer_session::{self, PeerOptions};
use super::stream_monitor;
use super::stream_session::{self, report_failure};
use crate::cli::{SendArgs, exit};
use crate::client::peer_stream::PeerMode;
use crate::client::report::amf_json;
use crate::client::stream::{StreamInput, StreamOutput, StreamRole};
use crate::flash::Value;

/// Deepest JSON nesting turned into AMF (the AMF decoders cap depth too).
const MAX_DEPTH: usize = 32;

/// A JSON value as AMF0: arrays become strict arrays, objects anonymous objects.
pub fn json_to_amf(v: &Json) -> Result<Value, String> {
    fn conv(v: &Json, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => Value::Number(n.as_f64().ok_or("number out of range")?),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(a) => Value::StrictArray(
                a.iter()
                    .map(|x| conv(x, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), conv(x, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
    conv(v, 0)
}

fn parse_arg(s: &str) -> Result<Value, String> {
    let v: Json = serde_json::from_str(s)
        .map_err(|e| format!("argument {s:?} is not JSON ({e}); quote text as '\"text\"'"))?;
    json_to_amf(&v)
}

/// One `--stdin` line: a JSON array is the argument list, anything else one argument.
fn parse_line(line: &str) -> Result<Vec<Value>, String> {
    let v: Json =
        serde_json::from_str(line).map_err(|e| format!("line {line:?} is not JSON ({e})"))?;
    match v {
        Json::Array(a) => a.iter().map(json_to_amf).collect(),
        other => Ok(vec![json_to_amf(&other)?]),
    }
}

pub fn run(args: SendArgs) -> i32 {
    let url = match stream_session::target("send", &args.target) {
        Ok(u) => u,
        Err(code) => return code,
    };
    if let Err(code) = super::monitor::check(&args.monitor, "send") {
        return code;
    }
    let mut first = vec![Value::str(args.handler.clone())];
    for a in &args.args {
        match parse_arg(a) {
            Ok(v) => first.push(v),
            Err(e) => {
                eprintln!("rtmfp send: {e}");
                return exit::USAGE;
            }
        }
    }
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmfp send: cannot start runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(run_async(args, url, first));
    rt.shutdown_background();
    code
}

async fn run_async(args: SendArgs, url: crate::client::StreamUrl, first: Vec<Value>) -> i32 {
    let json = args.json;
    let out = Box::new(move |o: StreamOutput| {
        if let StreamOutput::Started(i) | StreamOutput::Status(i) = o {
            if json {
                println!(
                    "{}",
                    json!({"type": "status", "code": i.code, "info": amf_json(&i.to_value())})
                );
            } else {
                tracing::info!("{}", i.code);
            }
        }
    });
    let opened = if args.peer.is_empty() {
        let role = StreamRole::Publish;
        stream_session::open("send", json, &args.target, &url, role, None, out).await
    } else {
        let opts = PeerOptions {
            name: args.name.clone(),
            ..PeerOptions::default()
        };
        let mode = PeerMode::Send {
            peers: args.peer.clone(),
        };
        peer_session::open("send", json, &args.target, &url, mode, opts, None, out).await
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(code) => return code,
    };
    let bad_line: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let feeder = {
        let tx = s.input.clone();
        let handler = args.handler.clone();
        let (with_args, stdin) = (!args.args.is_empty() || !args.stdin, args.stdin);
        let bad = bad_line.clone();
        std::thread::spawn(move || {
            if with_args && tx.blocking_send(StreamInput::Data(first)).is_err() {
                return;
            }
            if stdin {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    match parse_line(&line) {
                        Ok(vals) => {
                            let mut msg = vec![Value::str(handler.clone())];
                            msg.extend(vals);
                            if tx.blocking_send(StreamInput::Data(msg)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            *bad.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            break;
                        }
                    }
                }
            }
            let _ = tx.blocking_send(StreamInput::End);
        })
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let progress = s.driver.app.progress();
    let m = &args.monitor;
    let monitor =
        match stream_monitor::watch("send", m, &mut s.driver, &s.input, &progress, &interrupted) {
            Ok(m) => m,
            Err(code) => return code,
        };
    let r = stream_session::run("send", &mut s, interrupted.clone()).await;
    stream_monitor::unwatch(&mut s.driver, monitor, &interrupted).await;
    drop(s.input);
    // stdin may still be open; the feeder is left to the process exit then.
    drop(feeder);
    if let Err(code) = r {
        return code;
    }
    // Each --peer's result, also when every one failed.
    let results = s
        .driver
        .app
        .peer()
        .map(|p| p.send_results())
        .unwrap_or_default();
    for r in &results {
        if json {
            let mut line = r.to_json();
            line["type"] = json!("peer_result");
            println!("{line}");
        } else {
            match &r.error {
                None => eprintln!("peer {}: {} messages", r.target, r.messages),
                Some(e) if r.messages == 0 => eprintln!("peer {}: FAILED: {e}", r.target),
                Some(e) => eprintln!(
                    "peer {}: FAILED after {} messages: {e}",
                    r.target, r.messages
                ),
            }
        }
    }
    if let Some(f) = s.driver.app.failure() {
        return report_failure("send", json, f);
    }
    let sent = s.driver.app.progress().data.load(Relaxed);
    if json {
        println!("{}", json!({"type": "sent", "messages": sent}));
    } else {
        eprintln!("sent {sent} data messages");
    }
    if let Some(e) = bad_line.lock().unwrap_or_else(|p| p.into_inner()).take() {
        eprintln!("rtmfp send: {e}");
        return exit::USAGE;
    }
    if interrupted.load(SeqCst) {
        return exit::INTERRUPTED;
    }
    if results.iter().any(|r| r.error.is_some()) {
        return exit::PEER;
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arguments_become_amf0() {
        assert_eq!(parse_arg("\"hi\"").unwrap(), Value::str("hi"));
        assert_eq!(parse_arg("3.5").unwrap(), Value::Number(3.5));
        assert_eq!(parse_arg("null").unwrap(), Value::Null);
        assert_eq!(
            parse_arg("[true, {\"a\": 1}]").unwrap(),
            Value::StrictArray(vec![
                Value::Boolean(true),
                Value::Object(vec![("a".into(), Value::Number(1.0))])
            ])
        );
        assert!(parse_arg("hello").unwrap_err().contains("not JSON"));
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(parse_arg(&deep).is_err());
        assert_eq!(parse_line("[1, \"x\"]").unwrap().len(), 2);
        assert_eq!(parse_line("{\"k\": 2}").unwrap().len(), 1);
    }
}
