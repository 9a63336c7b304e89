//! From observations to a verdict in RFC 4787 terms (spec 05 §1, §1.4, §3.3).
//!
//! Evidence that does not fit together (a reply from the wrong address, a
//! server that ignores CHANGE-REQUEST, filtering that lets in a new address
//! but not a new port, two different answers to one request) is listed in
//! [`Verdict::inconsistencies`], and the behaviour it would decide stays
//! unknown: a forged or broken reply never turns into a confident verdict.

use std::net::SocketAddr;

use serde_json::{Value as Json, json};

use super::matrix::P2pClass;

/// RFC 4787 §4.1 mapping behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    /// ADM or APDM: the conncheck probes cannot tell them apart (spec 05 §3.3).
    Dependent,
}

impl Mapping {
    pub fn key(self) -> &'static str {
        match self {
            Mapping::EndpointIndependent => "endpoint_independent",
            Mapping::AddressDependent => "address_dependent",
            Mapping::AddressAndPortDependent => "address_and_port_dependent",
            Mapping::Dependent => "address_or_address_and_port_dependent",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Mapping::EndpointIndependent => {
                "endpoint-independent (EIM): one public address:port for every destination"
            }
            Mapping::AddressDependent => {
                "address-dependent (ADM): a new public port for each destination IP"
            }
            Mapping::AddressAndPortDependent => {
                "address-and-port-dependent (APDM): a new public port for each destination IP and port"
            }
            Mapping::Dependent => {
                "address- or address-and-port-dependent (ADM/APDM): a new public port for new destinations"
            }
        }
    }
}

/// RFC 4787 §5 filtering behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Filtering {
    pub fn key(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint_independent",
            Filtering::AddressDependent => "address_dependent",
            Filtering::AddressAndPortDependent => "address_and_port_dependent",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => {
                "endpoint-independent (EIF): anyone may send in once a mapping exists"
            }
            Filtering::AddressDependent => {
                "address-dependent (ADF): only IPs this host has sent to may send in"
            }
            Filtering::AddressAndPortDependent => {
                "address-and-port-dependent (APDF): only the exact IP:port this host has sent to may send in"
            }
        }
    }
}

/// One answer to one Binding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunReply {
    /// XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// Where the datagram came from.
    pub source: SocketAddr,
    pub other: Option<SocketAddr>,
    pub origin: Option<SocketAddr>,
    /// Another answer with the same transaction ID said something else.
    pub conflicting: bool,
}

/// What the RFC 5780 tests saw, for one address family. `None` = not run;
/// `Some(None)` = run, no answer.
#[derive(Debug, Clone, Default)]
pub struct StunObservations {
    /// The server address probed (A1:P1).
    pub server: Option<SocketAddr>,
    /// The mapping socket's local address (with a real IP, not 0.0.0.0).
    pub local: Option<SocketAddr>,
    /// Mapping test I, to A1:P1.
    pub test1: Option<StunReply>,
    /// Mapping test II, to A2:P1.
    pub test2: Option<Option<StunReply>>,
    /// Mapping test III, to A2:P2.
    pub test3: Option<Option<StunReply>>,
    /// Filtering test II (change IP and port), from a socket that only talked to A1:P1.
    pub filter2: Option<Option<StunReply>>,
    /// Filtering test III (change port).
    pub filter3: Option<Option<StunReply>>,
    /// A request sent to our own mapped address came back.
    pub hairpin: Option<bool>,
}

/// The verdict for one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// UDP reached the server and came back.
    pub udp: bool,
    /// Our public (reflexive) address.
    pub public: Option<SocketAddr>,
    /// The public address differs from the local one.
    pub nat: Option<bool>,
    pub mapping: Option<Mapping>,
    pub filtering: Option<Filtering>,
    pub port_preserved: Option<bool>,
    pub hairpin: Option<bool>,
    pub inconsistencies: Vec<String>,
    /// Why a behaviour is unknown when it is not an inconsistency.
    pub notes: Vec<String>,
}

impl Verdict {
    fn blank() -> Verdict {
        Verdict {
            udp: false,
            public: None,
            nat: None,
            mapping: None,
            filtering: None,
            port_preserved: None,
            hairpin: None,
            inconsistencies: vec![],
            notes: vec![],
        }
    }

    /// The spec 05 §5.1 kind, when the evidence decides it.
    pub fn class(&self) -> Option<P2pClass> {
        if !self.udp {
            return Some(P2pClass::Blocked);
        }
        match (self.mapping, self.filtering) {
            (Some(m), Some(f)) => Some(P2pClass::from_behaviour(m, f)),
            // A dependent mapping is symmetric whatever the filter.
            (Some(m), None) if m != Mapping::EndpointIndependent => Some(P2pClass::Symmetric),
            _ => None,
        }
    }

    /// The documented JSON shape (see `rtmfp probe-nat --help`).
    pub fn to_json(&self) -> Json {
        let class = self.class();
        json!({
            "udp": self.udp,
            "public_address": self.public.map(|a| a.to_string()),
            "nat": self.nat,
            "mapping": self.mapping.map(Mapping::key),
            "filtering": self.filtering.map(Filtering::key),
            "port_preserved": self.port_preserved,
            "hairpin": self.hairpin,
            "class": class.map(P2pClass::key),
            "name": class.map(|c| self.familiar_name(c)),
            "consistent": self.inconsistencies.is_empty(),
            "inconsistencies": self.inconsistencies,
            "notes": self.notes,
        })
    }

    /// "full cone", …, or "open internet" / "firewall" when there is no NAT.
    pub fn familiar_name(&self, c: P2pClass) -> &'static str {
        match (self.nat, c) {
            (Some(false), P2pClass::FullCone) => "open internet (no NAT, no filtering)",
            (Some(false), P2pClass::Restricted) => "no NAT, address-restricting firewall",
            (Some(false), P2pClass::PortRestricted) => "no NAT, stateful firewall",
            (_, c) => c.name(),
        }
    }
}

fn check_source(v: &mut Verdict, what: &str, reply: &StunReply, want: SocketAddr) -> bool {
    let mut ok = true;
    if reply.source != want {
        v.inconsistencies.push(format!(
            "{what}: the answer came from {}, expected {want}",
            reply.source
        ));
        ok = false;
    }
    if let Some(o) = reply.origin
        && o != reply.source
    {
        v.inconsistencies.push(format!(
            "{what}: RESPONSE-ORIGIN says {o} but the answer came from {}",
            reply.source
        ));
        ok = false;
    }
    if reply.conflicting {
        v.inconsistencies.push(format!(
            "{what}: two answers to one request disagreed (forged or duplicated replies)"
        ));
        ok = false;
    }
    ok
}

/// RFC 5780 §4.3, §4.4 (spec 05 §1.4).
pub fn classify_stun(o: &StunObservations) -> Verdict {
    let mut v = Verdict::blank();
    let (Some(server), Some(t1)) = (o.server, o.test1) else {
        v.notes.push(
            "no answer from the server: UDP is blocked on the way, or nothing listens there".into(),
        );
        return v;
    };
    v.udp = true;
    v.public = Some(t1.mapped);
    v.hairpin = o.hairpin;
    if t1.mapped.is_ipv4() != server.is_ipv4() {
        v.inconsistencies.push(format!(
            "the mapped address {} is of the wrong family",
            t1.mapped
        ));
    }
    let t1_ok = check_source(&mut v, "test I", &t1, server);
    if let Some(local) = o.local {
        v.nat = Some(t1.mapped != local);
        v.port_preserved = Some(t1.mapped.port() == local.port());
    }
    if !t1_ok {
        return v;
    }
    let Some(other) = t1.other else {
        v.notes.push(
            "the server gave no OTHER-ADDRESS (not an RFC 5780 server): mapping and filtering not tested"
                .into(),
        );
        return v;
    };
    if other.ip() == server.ip()
        || other.port() == server.port()
        || other.is_ipv4() != server.is_ipv4()
    {
        v.inconsistencies.push(format!(
            "OTHER-ADDRESS {other} must differ from {server} in both address and port"
        ));
        return v;
    }
    let a2p1 = SocketAddr::new(other.ip(), server.port());

    // Mapping (RFC 5780 §4.3).
    match (o.test2, o.test3) {
        (Some(Some(t2)), t3) => {
            let t2_ok = check_source(&mut v, "test II", &t2, a2p1);
            let t3 = t3.flatten();
            let t3_ok = t3.is_some_and(|r| check_source(&mut v, "test III", &r, other));
            if t2_ok {
                if t2.mapped == t1.mapped {
                    if t3_ok && t3.is_some_and(|r| r.mapped != t2.mapped) {
                        v.inconsistencies.push(
                            "the mapping stayed for a new address but changed for a new port of it"
                                .into(),
                        );
                    } else {
                        v.mapping = Some(Mapping::EndpointIndependent);
                    }
                } else if let (true, Some(t3)) = (t3_ok, t3) {
                    v.mapping = Some(if t3.mapped == t2.mapped {
                        Mapping::AddressDependent
                    } else {
                        Mapping::AddressAndPortDependent
                    });
                } else {
                    v.notes
                        .push("test III got no answer: ADM and APDM not told apart".into());
                    v.mapping = Some(Mapping::Dependent);
                }
            }
        }
        (Some(None), _) => v.inconsistencies.push(format!(
            "no answer from the server's other address {a2p1}, though {server} answered"
        )),
        (None, _) => {}
    }

    // Filtering (RFC 5780 §4.4).
    let a1p2 = SocketAddr::new(server.ip(), other.port());
    let f2 = match o.filter2 {
        Some(Some(r)) => {
            if r.source == server {
                v.inconsistencies.push(
                    "the server answered CHANGE-REQUEST from its own address: it ignores the request"
                        .into(),
                );
                None
            } else if check_source(&mut v, "filtering test II", &r, other) {
                Some(true)
            } else {
                None
            }
        }
        Some(None) => Some(false),
        None => None,
    };
    let f3 = match o.filter3 {
        Some(Some(r)) => {
            if r.source == server {
                v.inconsistencies.push(
                    "the server answered a change-port request from its own port: it ignores the request"
                        .into(),
                );
                None
            } else if check_source(&mut v, "filtering test III", &r, a1p2) {
                Some(true)
            } else {
                None
            }
        }
        Some(None) => Some(false),
        None => None,
    };
    v.filtering = match (f2, f3) {
        (Some(true), Some(true)) | (Some(true), None) => Some(Filtering::EndpointIndependent),
        (Some(false), Some(true)) => Some(Filtering::AddressDependent),
        (Some(false), Some(false)) => Some(Filtering::AddressAndPortDependent),
        (Some(true), Some(false)) => {
            v.inconsistencies.push(
                "a new address got in but a new port of the same address did not (packet loss? retest)"
                    .into(),
            );
            None
        }
        _ => None,
    };
    v
}

/// The keys of `NetConnection.ConnectivityCheck.Results` (spec 05 §3.2 step
/// 6); `None` is a null (test could not run) or a missing key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConncheckResults {
    pub public_address: Option<SocketAddr>,
    pub public_address_is_local: Option<bool>,
    pub public_port_matches_local_port: Option<bool>,
    pub receive_same_address_different_port_allowed: Option<bool>,
    pub receive_different_address_different_port_allowed: Option<bool>,
    pub send_after_introduction_allowed: Option<bool>,
    pub send_after_introduction_preserves_source_address: Option<bool>,
    pub send_after_introduction_preserves_source_port: Option<bool>,
}

/// Spec 05 §3.3.
pub fn classify_conncheck(r: &ConncheckResults) -> Verdict {
    let mut v = Verdict::blank();
    v.udp = true;
    v.public = r.public_address;
    v.nat = r.public_address_is_local.map(|l| !l);
    v.port_preserved = r.public_port_matches_local_port;
    v.filtering = match (
        r.receive_same_address_different_port_allowed,
        r.receive_different_address_different_port_allowed,
    ) {
        (Some(true), Some(true)) => Some(Filtering::EndpointIndependent),
        (Some(true), Some(false)) | (Some(true), None) => Some(Filtering::AddressDependent),
        (Some(false), Some(false)) | (Some(false), None) => {
            Some(Filtering::AddressAndPortDependent)
        }
        (Some(false), Some(true)) => {
            v.inconsistencies.push(
                "a probe from a new address got in but one from a new port did not (packet loss? retest)"
                    .into(),
            );
            None
        }
        (None, _) => {
            v.notes
                .push("the server did not run the receive probes".into());
            None
        }
    };
    // Without the different-address probe, "same address allowed" means ADF or EIF.
    if r.receive_different_address_different_port_allowed.is_none()
        && r.receive_same_address_different_port_allowed == Some(true)
    {
        v.notes.push(
            "the server has no second address: EIF and ADF not told apart (reported as ADF)".into(),
        );
    }
    v.mapping = match (
        r.send_after_introduction_allowed,
        r.send_after_introduction_preserves_source_address,
        r.send_after_introduction_preserves_source_port,
    ) {
        (Some(true), Some(true), Some(true)) => Some(Mapping::EndpointIndependent),
        (Some(true), Some(true), Some(false)) => Some(Mapping::Dependent),
        // rtmfp-cpp's conncheck sets "preserves source address" only when
        // IP *and* port are kept, so with a new port it says nothing of the IP.
        (Some(true), Some(false), Some(false)) => Some(Mapping::Dependent),
        (Some(true), Some(false), _) => {
            v.notes
                .push("a new destination saw a new public IP (arbitrary address pooling)".into());
            Some(Mapping::Dependent)
        }
        (Some(false), _, _) => {
            v.notes.push(
                "the introduction probe got no answer: outbound to new destinations is blocked, or this client ignores FIHello"
                    .into(),
            );
            None
        }
        _ => {
            v.notes
                .push("the server did not run the introduction probe".into());
            None
        }
    };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn reply(mapped: &str, source: &str) -> StunReply {
        StunReply {
            mapped: a(mapped),
            source: a(source),
            other: None,
            origin: None,
            conflicting: false,
        }
    }

    const S: &str = "192.0.2.10:3478";
    const OTHER: &str = "192.0.2.11:3479";

    /// Observations a NAT of the given behaviour would produce.
    fn observe(mapping: Mapping, filtering: Filtering) -> StunObservations {
        let pub1 = "192.0.2.100:40000";
        let mut t1 = reply(pub1, S);
        t1.other = Some(a(OTHER));
        let (m2, m3) = match mapping {
            Mapping::EndpointIndependent => (pub1, pub1),
            Mapping::AddressDependent => ("192.0.2.100:40001", "192.0.2.100:40001"),
            _ => ("192.0.2.100:40001", "192.0.2.100:40002"),
        };
        StunObservations {
            server: Some(a(S)),
            local: Some(a("198.51.100.2:40000")),
            test1: Some(t1),
            test2: Some(Some(reply(m2, "192.0.2.11:3478"))),
            test3: Some(Some(reply(m3, OTHER))),
            filter2: Some(
                (filtering == Filtering::EndpointIndependent)
                    .then(|| reply("192.0.2.100:40005", OTHER)),
            ),
            filter3: Some(
                (filtering != Filtering::AddressAndPortDependent)
                    .then(|| reply("192.0.2.100:40005", "192.0.2.10:3479")),
            ),
            hairpin: Some(false),
        }
    }

    #[test]
    fn every_behaviour_is_named() {
        for m in [
            Mapping::EndpointIndependent,
            Mapping::AddressDependent,
            Mapping::AddressAndPortDependent,
        ] {
            for f in [
                Filtering::EndpointIndependent,
                Filtering::AddressDependent,
                Filtering::AddressAndPortDependent,
            ] {
                let v = classify_stun(&observe(m, f));
                assert_eq!(v.mapping, Some(m));
                assert_eq!(v.filtering, Some(f));
                assert!(v.inconsistencies.is_empty(), "{:?}", v.inconsistencies);
                assert_eq!(v.nat, Some(true));
                assert_eq!(v.port_preserved, Some(true));
                assert_eq!(v.class(), Some(P2pClass::from_behaviour(m, f)));
            }
        }
    }

    #[test]
    fn no_answer_is_udp_blocked() {
        let v = classify_stun(&StunObservations {
            server: Some(a(S)),
            ..Default::default()
        });
        assert!(!v.udp);
        assert_eq!(v.class(), Some(P2pClass::Blocked));
    }

    #[test]
    fn forged_or_broken_replies_are_inconsistent_not_wrong() {
        // A reply to the change-IP request from the unchanged address: a
        // server ignoring CHANGE-REQUEST (or a forger) must not yield EIF.
        let mut o = observe(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        );
        o.filter2 = Some(Some(reply("192.0.2.100:40005", S)));
        let v = classify_stun(&o);
        assert_eq!(v.filtering, None);
        assert!(!v.inconsistencies.is_empty());

        // A reply from a third address.
        let mut o = observe(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        );
        o.filter2 = Some(Some(reply("192.0.2.100:40005", "203.0.113.9:1")));
        let v = classify_stun(&o);
        assert_eq!(v.filtering, None);
        assert!(!v.inconsistencies.is_empty());

        // Conflicting answers to test II.
        let mut o = observe(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
        );
        if let Some(Some(r)) = o.test2.as_mut() {
            r.conflicting = true;
        }
        let v = classify_stun(&o);
        assert_eq!(v.mapping, None);
        assert!(!v.inconsistencies.is_empty());

        // New address allowed but new port not.
        let mut o = observe(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        o.filter3 = Some(None);
        let v = classify_stun(&o);
        assert_eq!(v.filtering, None);
        assert!(!v.inconsistencies.is_empty());

        // Test I answered from the wrong address: nothing further is trusted.
        let mut o = observe(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        o.test1.as_mut().unwrap().source = a("203.0.113.1:3478");
        let v = classify_stun(&o);
        assert_eq!((v.mapping, v.filtering), (None, None));
        assert!(!v.inconsistencies.is_empty());
    }

    #[test]
    fn non_rfc5780_server_gives_only_the_public_address() {
        let mut o = observe(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        o.test1.as_mut().unwrap().other = None;
        let v = classify_stun(&o);
        assert_eq!(v.public, Some(a("192.0.2.100:40000")));
        assert_eq!((v.mapping, v.filtering), (None, None));
        assert!(v.inconsistencies.is_empty());
        assert!(!v.notes.is_empty());
    }

    #[test]
    fn conncheck_tables_of_spec_05() {
        let base = ConncheckResults {
            public_address: Some(a("192.0.2.100:40000")),
            public_address_is_local: Some(false),
            public_port_matches_local_port: Some(true),
            send_after_introduction_allowed: Some(true),
            send_after_introduction_preserves_source_address: Some(true),
            send_after_introduction_preserves_source_port: Some(true),
            ..Default::default()
        };
        let f = |same, diff| {
            classify_conncheck(&ConncheckResults {
                receive_same_address_different_port_allowed: Some(same),
                receive_different_address_different_port_allowed: Some(diff),
                ..base.clone()
            })
        };
        assert_eq!(
            f(true, true).filtering,
            Some(Filtering::EndpointIndependent)
        );
        assert_eq!(f(true, false).filtering, Some(Filtering::AddressDependent));
        assert_eq!(
            f(false, false).filtering,
            Some(Filtering::AddressAndPortDependent)
        );
        let odd = f(false, true);
        assert_eq!(odd.filtering, None);
        assert!(!odd.inconsistencies.is_empty());
        assert_eq!(f(true, true).mapping, Some(Mapping::EndpointIndependent));
        let sym = classify_conncheck(&ConncheckResults {
            send_after_introduction_preserves_source_port: Some(false),
            receive_same_address_different_port_allowed: Some(false),
            receive_different_address_different_port_allowed: Some(false),
            ..base.clone()
        });
        assert_eq!(sym.mapping, Some(Mapping::Dependent));
        assert_eq!(sym.class(), Some(P2pClass::Symmetric));
    }
}
