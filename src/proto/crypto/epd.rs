//! Endpoint Discriminators (spec 03 §5): which endpoint an initiator wants.

use super::cert::canonical_epd_of;
use super::{CryptoError, FINGERPRINT_LEN};
use crate::proto::wire::option::{Item, Options, push};

/// EPD option types (spec 03 §5.1).
pub(crate) mod epd_opt {
    pub const REQUIRED_HOSTNAME: u64 = 0x00;
    pub const ANCILLARY: u64 = 0x0a;
    pub const FINGERPRINT: u64 = 0x0f;
}

/// A parsed EPD borrowing its bytes. The first option of each type counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epd<'a> {
    fingerprint_raw: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    ancillary: Option<&'a [u8]>,
}

impl<'a> Epd<'a> {
    /// Parses an EPD: well-formed options (markers skipped) with at least one
    /// of hostname, ancillary data or fingerprint (spec 03 §5.1).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CryptoError> {
        let mut e = Epd {
            fingerprint_raw: None,
            hostname: None,
            ancillary: None,
        };
        for item in Options::new(bytes) {
            if let Item::Opt(o) = item.map_err(|_| CryptoError::BadEpd)? {
                let slot = match o.typ {
                    epd_opt::REQUIRED_HOSTNAME => &mut e.hostname,
                    epd_opt::ANCILLARY => &mut e.ancillary,
                    epd_opt::FINGERPRINT => &mut e.fingerprint_raw,
                    _ => continue,
                };
                slot.get_or_insert(o.value);
            }
        }
        if e.fingerprint_raw.is_none() && e.hostname.is_none() && e.ancillary.is_none() {
            return Err(CryptoError::BadEpd);
        }
        Ok(e)
    }

    /// Raw fingerprint option value (any length; only 32 bytes can match).
    pub fn fingerprint_raw(&self) -> Option<&'a [u8]> {
        self.fingerprint_raw
    }

    /// Required hostname (`0x00`).
    pub fn hostname(&self) -> Option<&'a [u8]> {
        self.hostname
    }

    /// Ancillary data (`0x0a`); `Some(&[])` for the empty option librtmfp sends (`01 0a`).
    pub fn ancillary(&self) -> Option<&'a [u8]> {
        self.ancillary
    }

    /// The fingerprint, when present and exactly 32 bytes.
    pub fn fingerprint(&self) -> Option<[u8; FINGERPRINT_LEN]> {
        self.fingerprint_raw.and_then(|f| f.try_into().ok())
    }

    /// `epd` names its endpoint by fingerprint (a peer ID).
    pub fn names_by_fingerprint(epd: &[u8]) -> bool {
        Epd::parse(epd).is_ok_and(|e| e.fingerprint_raw.is_some())
    }

    /// `epd` names its endpoint by ancillary data (a URL) alone, so a
    /// compact certificate may answer it: one naming a fingerprint or a
    /// hostname needs the certificate it names.
    pub fn names_by_url_only(epd: &[u8]) -> bool {
        Epd::parse(epd).is_ok_and(|e| {
            e.fingerprint_raw.is_none() && e.hostname.is_none() && e.ancillary.is_some()
        })
    }
}

/// Selection rules shared by the responder (§5.2) and initiator (§5.3) sides.
pub(crate) fn select(
    epd: &Epd<'_>,
    fp: &[u8; FINGERPRINT_LEN],
    hostname: Option<&[u8]>,
    server: bool,
) -> bool {
    if let Some(f) = epd.fingerprint_raw {
        return f == fp;
    }
    if let Some(want) = epd.hostname
        && hostname != Some(want)
    {
        return false;
    }
    if epd.ancillary.is_some() && !server {
        return false;
    }
    true
}

/// `21 0f ‖ peer ID`: the EPD Flash uses to reach a peer (spec 03 §5.5).
pub fn epd_for_peer(peer_id: &[u8; FINGERPRINT_LEN]) -> Vec<u8> {
    canonical_epd_of(peer_id).to_vec()
}

/// `LL 0a ‖ uri`: the EPD Flash uses to reach a server (spec 03 §5.5).
pub fn epd_for_uri(uri: &str) -> Vec<u8> {
    make_epd(None, Some(uri), None)
}

/// Reference `makeEPD`: fingerprint, ancillary data and required hostname
/// options, in that order, for whichever are given (spec 03 §5.5).
pub fn make_epd(
    fingerprint: Option<&[u8; FINGERPRINT_LEN]>,
    uri: Option<&str>,
    hostname: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(fp) = fingerprint {
        push(&mut out, epd_opt::FINGERPRINT, fp);
    }
    if let Some(u) = uri {
        push(&mut out, epd_opt::ANCILLARY, u.as_bytes());
    }
    if let Some(h) = hostname {
        push(&mut out, epd_opt::REQUIRED_HOSTNAME, h.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_epds() {
        let e = epd_for_uri("rtmfp://cc.rtmfp.net");
        assert_eq!(
            e,
            [&[0x15u8, 0x0a][..], b"rtmfp://cc.rtmfp.net"].concat(),
            "spec 03 §5.5 example"
        );
        let p = Epd::parse(&e).unwrap();
        assert_eq!(p.ancillary(), Some(&b"rtmfp://cc.rtmfp.net"[..]));
        assert_eq!(p.fingerprint(), None);
        let fp = [7u8; 32];
        let e = epd_for_peer(&fp);
        assert_eq!(&e[..2], &[0x21, 0x0f]);
        assert_eq!(Epd::parse(&e).unwrap().fingerprint(), Some(fp));
        assert_eq!(
            make_epd(Some(&fp), Some("u"), Some("h")),
            [&e[..], &[0x02, 0x0a, b'u', 0x02, 0x00, b'h']].concat()
        );
    }

    #[test]
    fn librtmfp_empty_ancillary_is_accepted() {
        let p = Epd::parse(&[0x01, 0x0a]).unwrap();
        assert_eq!(p.ancillary(), Some(&[][..]));
        assert!(select(&p, &[0; 32], None, true));
        assert!(!select(&p, &[0; 32], None, false));
    }

    #[test]
    fn malformed_and_empty() {
        assert_eq!(Epd::parse(&[]), Err(CryptoError::BadEpd));
        assert_eq!(Epd::parse(&[0x00]), Err(CryptoError::BadEpd));
        assert_eq!(
            Epd::parse(&[0x02, 0x33, 0x01]),
            Err(CryptoError::BadEpd),
            "unknown only"
        );
        assert_eq!(
            Epd::parse(&[0x21, 0x0f, 1, 2]),
            Err(CryptoError::BadEpd),
            "truncated"
        );
        assert_eq!(
            Epd::parse(&[0xff, 0xff, 0xff, 0x7f, 0x0a]),
            Err(CryptoError::BadEpd),
            "absurd length"
        );
        assert_eq!(
            Epd::parse(&[0x8f; 12]),
            Err(CryptoError::BadEpd),
            "vlu overflow"
        );
    }

    #[test]
    fn selection_rules() {
        let fp = [9u8; 32];
        let host = Some(&b"example.net"[..]);
        let b1 = epd_for_peer(&fp);
        let by_fp = Epd::parse(&b1).unwrap();
        assert!(select(&by_fp, &fp, None, false));
        assert!(!select(&by_fp, &[8; 32], None, true));
        // A short fingerprint selects nobody; other options are then ignored.
        let short = Epd::parse(&[0x03, 0x0f, 9, 9, 0x01, 0x0a]).unwrap();
        assert!(!select(&short, &fp, None, true));
        let b2 = make_epd(None, None, Some("example.net"));
        let by_host = Epd::parse(&b2).unwrap();
        assert!(select(&by_host, &fp, host, false));
        assert!(!select(&by_host, &fp, None, false));
        assert!(!select(&by_host, &fp, Some(b"example.org"), false));
        let b3 = make_epd(None, Some("rtmfp://x/"), Some("example.net"));
        let both = Epd::parse(&b3).unwrap();
        assert!(select(&both, &fp, host, true));
        assert!(!select(&both, &fp, host, false));
    }
}
