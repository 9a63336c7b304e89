//! Which NAT pairs can open a direct RTMFP session (spec 05 §5.1), with the
//! reason in one line, so `probe-nat` can say why and the lab can check it.

use super::classify::{Filtering, Mapping};

/// The four classic kinds spec 05 §5.1 reasons with, plus "UDP blocked".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum P2pClass {
    /// EIM + EIF (also: no NAT, no firewall).
    FullCone,
    /// EIM + ADF.
    Restricted,
    /// EIM + APDF (also: a stateful firewall without NAT).
    PortRestricted,
    /// ADM or APDM, with ADF or APDF.
    Symmetric,
    /// No UDP gets through: nothing direct, only a relay over another transport.
    Blocked,
}

impl P2pClass {
    pub const ALL: [P2pClass; 5] = [
        P2pClass::FullCone,
        P2pClass::Restricted,
        P2pClass::PortRestricted,
        P2pClass::Symmetric,
        P2pClass::Blocked,
    ];

    /// From RFC 4787 behaviours. A dependent mapping is symmetric whatever the
    /// filter (spec 05 §5.1 lists SYM with ADF or APDF; EIF with a dependent
    /// mapping is treated as SYM too, the conservative reading).
    pub fn from_behaviour(mapping: Mapping, filtering: Filtering) -> P2pClass {
        match (mapping, filtering) {
            (Mapping::EndpointIndependent, Filtering::EndpointIndependent) => P2pClass::FullCone,
            (Mapping::EndpointIndependent, Filtering::AddressDependent) => P2pClass::Restricted,
            (Mapping::EndpointIndependent, Filtering::AddressAndPortDependent) => {
                P2pClass::PortRestricted
            }
            _ => P2pClass::Symmetric,
        }
    }

    /// Stable name for JSON.
    pub fn key(self) -> &'static str {
        match self {
            P2pClass::FullCone => "full_cone",
            P2pClass::Restricted => "restricted_cone",
            P2pClass::PortRestricted => "port_restricted_cone",
            P2pClass::Symmetric => "symmetric",
            P2pClass::Blocked => "udp_blocked",
        }
    }

    /// The familiar (RFC 3489) name.
    pub fn name(self) -> &'static str {
        match self {
            P2pClass::FullCone => "full cone",
            P2pClass::Restricted => "restricted cone",
            P2pClass::PortRestricted => "port-restricted cone",
            P2pClass::Symmetric => "symmetric",
            P2pClass::Blocked => "UDP blocked",
        }
    }

    /// RFC 4787 terms.
    pub fn rfc4787(self) -> &'static str {
        match self {
            P2pClass::FullCone => "EIM + EIF",
            P2pClass::Restricted => "EIM + ADF",
            P2pClass::PortRestricted => "EIM + APDF",
            P2pClass::Symmetric => "ADM/APDM + ADF/APDF",
            P2pClass::Blocked => "no UDP",
        }
    }
}

/// Whether a direct session between two kinds opens, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub direct: bool,
    pub reason: &'static str,
}

/// Spec 05 §5.1: symmetric in who initiates; fails exactly when one side is
/// symmetric and the other filters by port (PRC or SYM), or UDP is blocked.
pub fn reach(a: P2pClass, b: P2pClass) -> Reach {
    use P2pClass::*;
    let (x, y) = if a as u8 <= b as u8 { (a, b) } else { (b, a) };
    let r = |direct, reason| Reach { direct, reason };
    match (x, y) {
        (_, Blocked) | (Blocked, _) => {
            r(false, "UDP does not get through: only a relay can carry it")
        }
        (FullCone, FullCone) => r(true, "both accept packets from anyone once mapped"),
        (FullCone, Symmetric) => r(
            true,
            "the full-cone side accepts the symmetric side's new mapping (its answer gets in)",
        ),
        (FullCone, _) => r(true, "the full-cone side lets the other's first packet in"),
        (Restricted, Symmetric) => r(
            true,
            "the restricted side has sent to the symmetric side's IP, so any of its ports gets in",
        ),
        (Restricted, _) => r(
            true,
            "both keep one mapping and punch a hole to the other's address",
        ),
        (PortRestricted, PortRestricted) => r(
            true,
            "both keep one mapping, so each punches a hole to the other's exact address and port",
        ),
        (PortRestricted, Symmetric) => r(
            false,
            "the symmetric side's new port is unknown and the port-restricted side only admits ports it sent to",
        ),
        (Symmetric, Symmetric) => r(
            false,
            "both pick a new port per destination, so neither can aim at the other's mapping",
        ),
        _ => unreachable!("the pair is ordered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use P2pClass::*;

    /// The table of spec 05 §5.1, row by row (plus UDP blocked).
    #[test]
    fn matches_spec_05_table() {
        let spec = [
            (FullCone, [true, true, true, true]),
            (Restricted, [true, true, true, true]),
            (PortRestricted, [true, true, true, false]),
            (Symmetric, [true, true, false, false]),
        ];
        let cols = [FullCone, Restricted, PortRestricted, Symmetric];
        for (a, row) in spec {
            for (b, want) in cols.iter().zip(row) {
                assert_eq!(reach(a, *b).direct, want, "{a:?} → {b:?}");
                assert_eq!(reach(*b, a).direct, want, "symmetric in who initiates");
            }
            assert!(!reach(a, Blocked).direct);
        }
    }
}
