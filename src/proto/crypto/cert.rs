//! Certificates of the Flash profile (spec 03 §4): an option sequence whose
//! canonical part (up to and including the first marker) is the identity.

use sha2::{Digest, Sha256};

use super::dh::DhGroup;
use super::epd::{Epd, select};
use super::{CryptoError, FINGERPRINT_LEN};
use crate::proto::wire::Reader;
use crate::proto::wire::option::{Item, Options, read_item};
use crate::proto::wire::vlu;

/// Certificate option types (spec 03 §4.1).
pub(crate) mod cert_opt {
    pub const HOSTNAME: u64 = 0x00;
    pub const ACCEPTS_ANCILLARY: u64 = 0x0a;
    pub const EXTRA_RANDOMNESS: u64 = 0x0e;
    pub const EPHEMERAL_GROUP: u64 = 0x15;
    pub const STATIC_KEY: u64 = 0x1d;
}

/// A parsed, validated certificate borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Certificate<'a> {
    bytes: &'a [u8],
    canonical_len: usize,
    hostname: Option<&'a [u8]>,
    accepts_ancillary: bool,
    is_static: bool,
}

/// Splits a `vlu group ‖ rest` option value.
pub(crate) fn split_group(value: &[u8]) -> Option<(u64, &[u8])> {
    let (g, n) = vlu::decode(value).ok()?;
    Some((g, &value[n..]))
}

impl<'a> Certificate<'a> {
    /// Parses and validates: every option well formed; the canonical part has
    /// ephemeral-group options or static keys, never both, never neither
    /// (reference `FlashCryptoCert::init`, spec 03 §4.1).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CryptoError> {
        let mut canonical_len = bytes.len();
        let mut in_canonical = true;
        let mut hostname = None;
        let mut accepts_ancillary = false;
        let (mut n_static, mut n_ephemeral) = (0usize, 0usize);
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            match read_item(&mut r).map_err(|_| CryptoError::BadCertificate)? {
                Item::Marker => {
                    if in_canonical {
                        canonical_len = r.position();
                        in_canonical = false;
                    }
                }
                Item::Opt(o) if in_canonical => match o.typ {
                    cert_opt::HOSTNAME if hostname.is_none() => hostname = Some(o.value),
                    cert_opt::ACCEPTS_ANCILLARY => accepts_ancillary = true,
                    cert_opt::EPHEMERAL_GROUP => {
                        split_group(o.value).ok_or(CryptoError::BadCertificate)?;
                        n_ephemeral += 1;
                    }
                    cert_opt::STATIC_KEY => {
                        let (_, key) = split_group(o.value).ok_or(CryptoError::BadCertificate)?;
                        if key.is_empty() {
                            return Err(CryptoError::BadCertificate);
                        }
                        n_static += 1;
                    }
                    _ => {}
                },
                Item::Opt(_) => {}
            }
        }
        if (n_static > 0) == (n_ephemeral > 0) {
            return Err(CryptoError::BadCertificate);
        }
        Ok(Certificate {
            bytes,
            canonical_len,
            hostname,
            accepts_ancillary,
            is_static: n_static > 0,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes up to and including the first marker (all of them without one).
    pub fn canonical(&self) -> &'a [u8] {
        &self.bytes[..self.canonical_len]
    }

    /// SHA-256 of the canonical part: the Flash peer ID (spec 03 §4.2).
    pub fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        Sha256::digest(self.canonical()).into()
    }

    /// `21 0f ‖ fingerprint` (spec 03 §5.4).
    pub fn canonical_epd(&self) -> [u8; 34] {
        canonical_epd_of(&self.fingerprint())
    }

    /// True for a static-DH certificate (`0x1d` keys), false for ephemeral (`0x15` groups).
    pub fn is_static(&self) -> bool {
        self.is_static
    }

    /// Supported DH groups in certificate order (the `0x15` list, or the groups
    /// of the `0x1d` keys). Group IDs we do not implement are skipped.
    pub fn groups(&self) -> impl Iterator<Item = DhGroup> + 'a {
        let typ = if self.is_static {
            cert_opt::STATIC_KEY
        } else {
            cert_opt::EPHEMERAL_GROUP
        };
        Options::opts(self.canonical())
            .filter(move |o| o.typ == typ)
            .filter_map(|o| split_group(o.value).and_then(|(g, _)| DhGroup::from_id(g)))
    }

    /// Whether the certificate offers `group` (either way).
    pub fn supports(&self, group: DhGroup) -> bool {
        self.groups().any(|g| g == group)
    }

    /// The static public key for `group`, if the certificate carries one.
    pub fn static_key(&self, group: DhGroup) -> Option<&'a [u8]> {
        Options::opts(self.canonical())
            .filter(|o| o.typ == cert_opt::STATIC_KEY)
            .filter_map(|o| split_group(o.value))
            .find(|(g, _)| *g == u64::from(group.id()))
            .map(|(_, k)| k)
    }

    /// The `0x00` hostname option, if any.
    pub fn hostname(&self) -> Option<&'a [u8]> {
        self.hostname
    }

    /// Whether the `0x0a` flag is present (the endpoint is a server).
    pub fn accepts_ancillary(&self) -> bool {
        self.accepts_ancillary
    }

    /// Whether this is Flash Player's own certificate, as Flash peers and
    /// librtmfp present it: one static group-2 key and nothing else
    /// (spec 03 §4.3). Such a peer keys only in group 2 and reads only a
    /// certificate of the same layout from us.
    pub fn is_flash_player_peer(&self) -> bool {
        let mut opts = Options::opts(self.canonical());
        let only = opts.next();
        opts.next().is_none()
            && only.is_some_and(|o| {
                o.typ == cert_opt::STATIC_KEY
                    && split_group(o.value).is_some_and(|(g, _)| g == u64::from(DhGroup::G2.id()))
            })
    }

    /// Whether this is a Flash-era server certificate (Adobe Cirrus and its
    /// descendants Cumulus and MonaServer, spec 03 §4.3 and 06): ephemeral
    /// groups listed weakest first starting with group 2, after the extra
    /// randomness. The reference (and we) list the strongest group first.
    /// Such servers compute group 2 whatever was negotiated and read only
    /// Flash Player's single-key certificate.
    pub fn is_flash_era(&self) -> bool {
        if self.is_static {
            return false;
        }
        let mut seen_randomness = false;
        let mut groups = Vec::new();
        for o in Options::opts(self.canonical()) {
            match o.typ {
                cert_opt::EXTRA_RANDOMNESS if groups.is_empty() => seen_randomness = true,
                cert_opt::EPHEMERAL_GROUP => match split_group(o.value) {
                    Some((g, _)) => groups.push(g),
                    None => return false,
                },
                _ => {}
            }
        }
        seen_randomness && groups.first() == Some(&2) && groups.is_sorted()
    }
}

/// `21 0f ‖ fp` (spec 03 §5.4).
pub(crate) fn canonical_epd_of(fp: &[u8; FINGERPRINT_LEN]) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[0] = 0x21;
    out[1] = 0x0f;
    out[2..].copy_from_slice(fp);
    out
}

/// Initiator side: does `epd` select this certificate (spec 03 §5.3)? A
/// malformed EPD selects nothing.
pub fn cert_selected_by(cert: &Certificate<'_>, epd: &[u8]) -> bool {
    match Epd::parse(epd) {
        Ok(e) => select(
            &e,
            &cert.fingerprint(),
            cert.hostname(),
            cert.accepts_ancillary(),
        ),
        Err(_) => false,
    }
}

/// Glare (spec 03 §7, 02 §11): the near end wins unless the far certificate
/// sorts strictly before ours, comparing raw bytes: `!(far < near)`.
pub fn near_wins_glare(near_cert: &[u8], far_cert: &[u8]) -> bool {
    far_cert >= near_cert
}

/// A new certificate overrides an open session only when byte-identical to
/// that session's certificate (spec 03 §7).
pub fn cert_overrides(old: &[u8], new: &[u8]) -> bool {
    old == new
}

#[cfg(test)]
mod flash_era_tests {
    use super::*;
    use crate::proto::crypto::{DhGroup, Identity};
    use crate::proto::rng::SeededRng;

    #[test]
    fn cirrus_lineage_certificates_are_recognised() {
        // MonaServer2 / Cumulus / Adobe Cirrus: 01 0a, 41 0e + 64 random
        // bytes, then groups 2, 5, 14 (spec 03 §4.3).
        let mut mona = vec![0x01, 0x0a, 0x41, 0x0e];
        mona.extend([0x5a; 64]);
        mona.extend([0x02, 0x15, 0x02, 0x02, 0x15, 0x05, 0x02, 0x15, 0x0e]);
        assert!(Certificate::parse(&mona).unwrap().is_flash_era());

        // The reference server: strongest group first, randomness last.
        let mut reference = vec![0x01, 0x0a, 0x02, 0x15, 0x10, 0x02, 0x15, 0x0e];
        reference.extend([0x02, 0x15, 0x02, 0x41, 0x0e]);
        reference.extend([0x5a; 64]);
        assert!(!Certificate::parse(&reference).unwrap().is_flash_era());

        let mut rng = SeededRng::new(3);
        let ours = Identity::generate_ephemeral_server(&DhGroup::ALL, &mut rng).unwrap();
        assert!(!ours.parsed().is_flash_era());
        let flash = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
        assert!(!flash.parsed().is_flash_era());
    }

    #[test]
    fn flash_player_peer_certificates_are_recognised() {
        // Flash Player / librtmfp: exactly `81 02 1d 02` + a 128-byte key.
        let mut player = vec![0x81, 0x02, 0x1d, 0x02];
        player.extend([0x77; 128]);
        assert!(Certificate::parse(&player).unwrap().is_flash_player_peer());

        let mut rng = SeededRng::new(4);
        let single = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
        assert_eq!(single.certificate().len(), 132);
        assert_eq!(&single.certificate()[..4], &player[..4]);
        assert!(single.parsed().is_flash_player_peer());
        // Anything more or else is not Flash Player's: another group, a
        // second key, a hostname, or a server's ephemeral groups.
        for groups in [
            &[DhGroup::G14][..],
            &[DhGroup::G14, DhGroup::G2],
            &DhGroup::ALL,
        ] {
            let id = Identity::generate_static(groups, None, false, &mut rng).unwrap();
            assert!(!id.parsed().is_flash_player_peer(), "{groups:?}");
        }
        let mut named = vec![0x05, 0x00, b'h', b'o', b's', b't'];
        named.extend(&player);
        assert!(!Certificate::parse(&named).unwrap().is_flash_player_peer());
        let server = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
        assert!(!server.parsed().is_flash_player_peer());
    }
}
