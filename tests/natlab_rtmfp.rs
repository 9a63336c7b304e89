//! The NAT lab (tests/support/natlab.rs) with the real binary, RTMFP half
//! of `probe-nat`: the connectivity check (spec 05 §3) against our serve
//! classifies every lab NAT kind as the STUN half does (IPv4 and IPv6), and
//! as coturn's turnutils_natdiscovery does; rtmfp-cpp's conncheck and
//! tcconn interoperate (when `RTMFP_CONNCHECK` / `RTMFP_TCCONN` name their
//! binaries); `--peer` predictions meet real direct sessions. Runs as root;
//! skips loudly where the kernel refuses namespaces.

#[path = "support/natlab.rs"]
mod natlab;
#[path = "support/natlab_probe.rs"]
mod natlab_probe;

use std::time::Duration;

use natlab::{Host, Lab, NatKind};
use natlab_probe::*;
use serde_json::Value as Json;

#[test]
fn lab_kinds_classified_over_rtmfp_by_our_server() {
    let Some(mut lab) = Lab::or_skip("lab_kinds_classified_over_rtmfp_by_our_server") else {
        return;
    };
    let server = lab.server(3);
    let _serve = start_our_rtmfp_server(&lab, &server);
    let target = format!("rtmfp://{}:1935/app", server.ip);
    let hosts: Vec<(NatKind, Host)> = NatKind::ALL.iter().map(|k| (*k, lab.host(*k).0)).collect();
    let results: Vec<(NatKind, Option<i32>, Json)> = std::thread::scope(|s| {
        let lab = &lab;
        let target = &target;
        let handles: Vec<_> = hosts
            .iter()
            .map(|(k, h)| s.spawn(move || (*k, probe(lab, h, target))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (k, (c, v)) = h.join().unwrap();
                (k, c, v)
            })
            .collect()
    });
    for (k, c, v) in &results {
        check_rtmfp(*k, *c, v, &server.ns);
    }
}

/// The same host gets the same verdict from both halves of probe-nat:
/// STUN against our probe quad, and the RTMFP check against the same
/// server (filtering, NAT, port preservation and the class agree).
#[test]
fn lab_rtmfp_and_stun_verdicts_agree() {
    let Some(mut lab) = Lab::or_skip("lab_rtmfp_and_stun_verdicts_agree") else {
        return;
    };
    let stun_server = lab.server(2);
    let rtmfp_server = lab.server(3);
    let _a = start_our_server(&lab, &stun_server);
    let _b = start_our_rtmfp_server(&lab, &rtmfp_server);
    for kind in [
        NatKind::None,
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let (host, _) = lab.host(kind);
        let (_, s) = probe(&lab, &host, &format!("stun://{}:3478", stun_server.ip));
        let (_, r) = probe(
            &lab,
            &host,
            &format!("rtmfp://{}:1935/app", rtmfp_server.ip),
        );
        for key in [
            "udp",
            "nat",
            "filtering",
            "port_preserved",
            "class",
            "consistent",
        ] {
            assert_eq!(s[key], r[key], "{kind:?} {key}: stun {s} rtmfp {r}");
        }
    }
}

/// Interop: rtmfp-cpp's `conncheck` as the probe server (three addresses in
/// a lab namespace), our `probe-nat rtmfp://` behind every lab NAT. Our
/// verdict must be the lab's truth, and the results conncheck logs (its own
/// reading of the probes) must be what we were sent. The reference is not
/// part of this project: the test runs only when `RTMFP_CONNCHECK` names a
/// conncheck binary built elsewhere, and says so when it skips.
#[test]
fn lab_rtmfp_cpp_conncheck_interop() {
    let Some(bin) = std::env::var_os("RTMFP_CONNCHECK") else {
        eprintln!("\n*** RTMFP_CONNCHECK (path to rtmfp-cpp's conncheck) not set; skipping ***\n");
        return;
    };
    let bin = bin.to_string_lossy().into_owned();
    let Some(mut lab) = Lab::or_skip("lab_rtmfp_cpp_conncheck_interop") else {
        return;
    };
    let server = lab.server(3);
    let (a1, a2, a3) = (server.ip, server.extra[0], server.extra[1]);
    let mut cc = lab.spawn(
        &server,
        &bin,
        &[
            "-v",
            "-B",
            &format!("{a1}:1935"),
            "-p",
            "1936",
            "-a",
            &format!("{a2}:1937"),
            "-i",
            &format!("{a3}:1938"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let target = format!("rtmfp://{a1}:1935/app");
    let mut ours = Vec::new();
    for kind in NatKind::ALL {
        let (host, _) = lab.host(kind);
        let (code, v) = probe(&lab, &host, &target);
        check_rtmfp(kind, code, &v, "conncheck");
        ours.push((kind, v));
    }
    // conncheck's log is block-buffered: stop it to read it.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &cc.0.id().to_string()])
        .status();
    let mut log = String::new();
    if let Some(mut out) = cc.0.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut log);
    }
    let results: Vec<Json> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|v| v["@type"] == "results")
        .collect();
    for (kind, v) in &ours {
        if !v["udp"].as_bool().unwrap_or(false) {
            continue;
        }
        let public = v["public_address"].as_str().unwrap();
        let r = results
            .iter()
            .find(|r| r["address"] == public)
            .unwrap_or_else(|| panic!("{kind:?}: conncheck logged no results for {public}"));
        eprintln!("{kind:?}: conncheck's own reading {r}");
        let filtering = match (
            r["receiveSameAddressDifferentPortAllowed"].as_bool(),
            r["receiveDifferentAddressDifferentPortAllowed"].as_bool(),
        ) {
            (Some(true), Some(true)) => "endpoint_independent",
            (Some(true), Some(false)) => "address_dependent",
            _ => "address_and_port_dependent",
        };
        assert_eq!(v["filtering"], filtering, "{kind:?}: {v} vs {r}");
        let eim = r["sendAfterIntroductionPreservesSourcePort"] == Json::Bool(true);
        assert_eq!(
            v["mapping"] == "endpoint_independent",
            eim,
            "{kind:?}: {v} vs {r}"
        );
        assert_eq!(
            v["nat"].as_bool().map(|n| !n),
            r["publicAddressIsLocal"].as_bool()
        );
    }
}

/// IPv6 (2001:db8::/32) through NAT66 of every lab kind: both halves of
/// probe-nat classify each as its IPv4 twin, against one serve holding the
/// STUN quad and the RTMFP check's third address.
#[test]
fn lab_ipv6_kinds_classified_over_stun_and_rtmfp() {
    let Some(mut lab) = Lab::or_skip("lab_ipv6_kinds_classified_over_stun_and_rtmfp") else {
        return;
    };
    let server = lab.server(3);
    let v6 = lab.enable_ipv6(&server, None);
    let (s1, s2, s3) = (v6[0], v6[1], v6[2]);
    let mut args: Vec<String> = vec![
        "serve".into(),
        "-q".into(),
        "--ephemeral".into(),
        "--json".into(),
        "--listen".into(),
        format!("[{s1}]:1935"),
    ];
    for a in [
        format!("[{s1}]:3478"),
        format!("[{s1}]:3479"),
        format!("[{s2}]:3478"),
        format!("[{s2}]:3479"),
        format!("[{s3}]:3478"),
    ] {
        args.push("--probe-addr".into());
        args.push(a);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut serve = lab.spawn(&server, BIN, &argv);
    wait_events(&mut serve, "probe_listening", 5);
    for kind in NatKind::ALL {
        let (host, nat) = lab.host(kind);
        if let Some(n) = nat.as_ref() {
            lab.enable_ipv6_nat(n);
        }
        lab.enable_ipv6(&host, nat.as_ref());
        let (code, v) = probe6(&lab, &host, &format!("stun://[{s1}]:3478"));
        assert_eq!(v["family"], "ipv6", "{v}");
        check(kind, code, &v, "ipv6 stun");
        let (code, v) = probe6(&lab, &host, &format!("rtmfp://[{s1}]:1935/app"));
        assert_eq!(v["family"], "ipv6", "{v}");
        check_rtmfp(kind, code, &v, "ipv6 rtmfp");
    }
}

/// `probe-nat --peer`: predicted (spec 05 §5.1, from our class) against
/// what a real direct session through the server's introduction does,
/// for pairs of lab NATs on both sides of the matrix.
#[test]
fn lab_peer_check_prediction_matches_reality() {
    let Some(mut lab) = Lab::or_skip("lab_peer_check_prediction_matches_reality") else {
        return;
    };
    let server = lab.server(3);
    let _serve = start_our_rtmfp_server(&lab, &server);
    let url = format!("rtmfp://{}:1935/app", server.ip);
    // (ours, the peer's, direct session expected). Port-restricted to
    // port-restricted needs the routers' input firewall (an unsolicited
    // packet to the router is dropped before conntrack confirms an entry
    // for it, which would otherwise take the port the RHello needs).
    let pairs = [
        (NatKind::PortRestricted, NatKind::PortRestricted, true),
        (NatKind::PortRestricted, NatKind::FullCone, true),
        (NatKind::Symmetric, NatKind::FullCone, true),
        (NatKind::Symmetric, NatKind::PortRestricted, false),
    ];
    for (i, (ours, theirs, direct)) in pairs.into_iter().enumerate() {
        let (peer_host, _) = lab.host(theirs);
        let name = format!("peer{i}");
        let _peer = lab.spawn(
            &peer_host,
            BIN,
            &["connect", &url, "--name", &name, "--stay", "60s", "--json"],
        );
        let (host, _) = lab.host(ours);
        let mut v = Json::Null;
        for _ in 0..40 {
            let out = lab.run_in(
                &host,
                BIN,
                &[
                    "probe-nat",
                    &url,
                    "--json",
                    "-4",
                    "--peer",
                    &name,
                    "--peer-timeout",
                    "6s",
                ],
                Duration::from_secs(40),
            );
            if out.status.code() == Some(8) {
                // The peer has not registered its name yet.
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            v = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            break;
        }
        let ctx = format!("{ours:?} -> {theirs:?}: {v}");
        assert_eq!(v["type"], "peer_check", "{ctx}");
        assert_eq!(v["actual"]["direct"], direct, "{ctx}");
        assert_eq!(v["agrees"], true, "{ctx}");
    }
}

/// The RTMFP check gives the same verdict on every run, and its wall time
/// next to the STUN probe's on the same path (figures only, printed; no
/// timing is asserted; the kernel here has no netem, so no added delay).
#[test]
fn lab_rtmfp_results_stable_over_repeated_runs() {
    let Some(mut lab) = Lab::or_skip("lab_rtmfp_results_stable_over_repeated_runs") else {
        return;
    };
    let runs: usize = std::env::var("NATLAB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let server = lab.server(3);
    let _serve = start_our_rtmfp_server(&lab, &server);
    let stun_server = lab.server(2);
    let _stun = start_our_server(&lab, &stun_server);
    let rtmfp = format!("rtmfp://{}:1935/app", server.ip);
    let stun = format!("stun://{}:3478", stun_server.ip);
    for kind in [
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let (host, _) = lab.host(kind);
        let (mut ours, mut st) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = std::time::Instant::now();
            let (code, v) = probe(&lab, &host, &rtmfp);
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            check_rtmfp(kind, code, &v, &server.ns);
            let t = std::time::Instant::now();
            let (code, v) = probe(&lab, &host, &stun);
            st.push(t.elapsed().as_secs_f64() * 1e3);
            check(kind, code, &v, &stun_server.ns);
        }
        ours.sort_by(f64::total_cmp);
        st.sort_by(f64::total_cmp);
        eprintln!(
            "{kind:?}: probe-nat rtmfp:// p50 {:.0} ms p99 {:.0} ms; stun:// p50 {:.0} ms p99 {:.0} ms ({runs} runs, process start included)",
            percentile(&ours, 0.5),
            percentile(&ours, 0.99),
            percentile(&st, 0.5),
            percentile(&st, 0.99),
        );
    }
}

/// The ConnectivityCheck.Results object tcconn prints, as key → value text.
fn tcconn_results(out: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let start = out.find("NetConnection.ConnectivityCheck.Results")?;
    let body = &out[start..];
    let end = body.find('}')?;
    Some(
        body[..end]
            .lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                Some((
                    k.trim().trim_matches('"').to_owned(),
                    v.trim().trim_end_matches(',').to_owned(),
                ))
            })
            .filter(|(k, _)| k != "publicAddress" && k != "level" && k != "description")
            .collect(),
    )
}

/// Interop: rtmfp-cpp's client (`tcconn`, which sends setPeerInfo and
/// answers FIHellos) behind every lab NAT gets the same results object
/// from our serve as from rtmfp-cpp's conncheck, except the one key where
/// conncheck compares IP and port together (see `results_info`). Runs when
/// `RTMFP_TCCONN` and `RTMFP_CONNCHECK` name the binaries.
#[test]
fn lab_rtmfp_cpp_tcconn_gets_the_same_results_from_our_serve() {
    let (Some(tcconn), Some(cc)) = (
        std::env::var_os("RTMFP_TCCONN"),
        std::env::var_os("RTMFP_CONNCHECK"),
    ) else {
        eprintln!(
            "\n*** RTMFP_TCCONN / RTMFP_CONNCHECK (rtmfp-cpp binaries) not set; skipping ***\n"
        );
        return;
    };
    let (tcconn, cc) = (
        tcconn.to_string_lossy().into_owned(),
        cc.to_string_lossy().into_owned(),
    );
    let Some(mut lab) = Lab::or_skip("lab_rtmfp_cpp_tcconn") else {
        return;
    };
    let ours = lab.server(3);
    let _serve = start_our_rtmfp_server(&lab, &ours);
    let theirs = lab.server(3);
    let (b1, b2, b3) = (theirs.ip, theirs.extra[0], theirs.extra[1]);
    let _cc = lab.spawn(
        &theirs,
        &cc,
        &[
            "-B",
            &format!("{b1}:1935"),
            "-p",
            "1936",
            "-a",
            &format!("{b2}:1937"),
            "-i",
            &format!("{b3}:1938"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    for kind in [
        NatKind::None,
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let (host, _) = lab.host(kind);
        let run = |ip: std::net::Ipv4Addr| {
            // Line-buffered: it is killed at the end, before any exit flush.
            let out = lab.run_in(
                &host,
                "stdbuf",
                &["-oL", &tcconn, "-4", &format!("rtmfp://{ip}:1935/live")],
                Duration::from_secs(4),
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            tcconn_results(&text)
                .unwrap_or_else(|| panic!("{kind:?}: no results from {ip}: {text}"))
        };
        let mut a = run(ours.ip);
        let mut b = run(theirs.ip);
        eprintln!("{kind:?}: ours {a:?}\n{kind:?}: conncheck {b:?}");
        if kind == NatKind::Symmetric {
            // Same IP, new port: conncheck says "address not preserved".
            assert_eq!(a["sendAfterIntroductionPreservesSourceAddress"], "true");
            assert_eq!(b["sendAfterIntroductionPreservesSourceAddress"], "false");
            a.remove("sendAfterIntroductionPreservesSourceAddress");
            b.remove("sendAfterIntroductionPreservesSourceAddress");
        }
        assert_eq!(a, b, "{kind:?}: our serve vs conncheck");
    }
}

/// coturn's `turnutils_natdiscovery` (against our STUN quad) and our RTMFP
/// check (against the same serve's third address) read the same NAT: EIM or
/// not, and the same filtering.
#[test]
fn lab_rtmfp_check_agrees_with_turnutils_natdiscovery() {
    let Some(mut lab) = Lab::or_skip("lab_rtmfp_check_agrees_with_turnutils_natdiscovery") else {
        return;
    };
    if std::process::Command::new("turnutils_natdiscovery")
        .output()
        .is_err()
    {
        eprintln!("\n*** turnutils_natdiscovery (coturn) not installed; skipping ***\n");
        return;
    }
    let server = lab.server(3);
    let (a1, a2, a3) = (server.ip, server.extra[0], server.extra[1]);
    let _serve = start_serve(
        &lab,
        &server,
        1935,
        &[(a1, 3478), (a1, 3479), (a2, 3478), (a2, 3479), (a3, 3478)],
    );
    for kind in [
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let (host, _) = lab.host(kind);
        let (verdicts, _) = natdiscovery_verdicts(&lab, &host, a1);
        let said = |what: &str| verdicts.iter().any(|l| l.contains(what));
        let eim = said("Endpoint Independent Mapping");
        let filtering = if said("Endpoint Independent Filtering") {
            "endpoint_independent"
        } else if said("Address Dependent Filtering") {
            "address_dependent"
        } else if said("Address and Port Dependent Filtering") {
            "address_and_port_dependent"
        } else {
            panic!("{kind:?}: natdiscovery named no filtering: {verdicts:?}")
        };
        let (_, v) = probe(&lab, &host, &format!("rtmfp://{a1}:1935/app"));
        eprintln!(
            "{kind:?}: natdiscovery {verdicts:?}; rtmfp {} / {}",
            v["mapping"], v["filtering"]
        );
        assert_eq!(
            v["mapping"] == "endpoint_independent",
            eim,
            "{kind:?}: {v} vs {verdicts:?}"
        );
        assert_eq!(v["filtering"], filtering, "{kind:?}: {v} vs {verdicts:?}");
    }
}
