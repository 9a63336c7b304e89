//! Our own certificate and private keys (spec 03 §4.3).

use sha2::{Digest, Sha256};

use super::cert::{Certificate, canonical_epd_of, cert_opt, split_group};
use super::dh::{DhGroup, DhPrivateKey};
use super::epd::{Epd, select};
use super::{CryptoError, FINGERPRINT_LEN};
use crate::proto::rng::Rng;
use crate::proto::wire::option::{Options, push};
use crate::proto::wire::{Reader, vlu};

/// Bytes of extra randomness in an ephemeral certificate (reference: 64, spec 03 §4.1).
const CERT_RANDOMNESS: usize = 64;
/// Key file header: magic and format version.
const KEY_FILE_MAGIC: &[u8; 8] = b"RTMFPID\x01";

#[derive(Clone)]
enum Keys {
    /// One static key per certificate group, certificate order.
    Static(Vec<DhPrivateKey>),
    /// Fresh keys per session in these groups, certificate order.
    Ephemeral(Vec<DhGroup>),
}

/// Our certificate and the private keys behind it. Private exponents are
/// zeroized on drop.
#[derive(Clone)]
pub struct Identity {
    cert: Vec<u8>,
    fingerprint: [u8; FINGERPRINT_LEN],
    keys: Keys,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &super::peer_id_hex(&self.fingerprint))
            .field("static", &self.is_static())
            .finish_non_exhaustive()
    }
}

fn dedup(groups: &[DhGroup]) -> Vec<DhGroup> {
    let mut out: Vec<DhGroup> = Vec::new();
    for &g in groups {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

impl Identity {
    /// A static-DH identity: `[hostname] [01 0a if server]` then one
    /// `1d group ‖ public key` option per group, in preference order, like
    /// the reference client (spec 03 §4.3). With `[G2]`, no hostname and not
    /// a server this is exactly Flash Player's `81 02 1d 02 <128 B>`.
    ///
    /// Interop: MonaServer2's IIKeying handler does not parse the certificate;
    /// it takes the first option as `LL 1d 02 <key>` and reads the SKIC length
    /// right after it, so Mona/Cumulus-class servers (and librtmfp peers) only
    /// accept that exact single-key group-2 certificate.
    pub fn generate_static(
        groups: &[DhGroup],
        hostname: Option<&str>,
        server: bool,
        rng: &mut dyn Rng,
    ) -> Result<Self, CryptoError> {
        let groups = dedup(groups);
        if groups.is_empty() {
            return Err(CryptoError::BadSettings);
        }
        let keys = groups
            .iter()
            .map(|&g| DhPrivateKey::generate(g, rng))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_static_keys(keys, hostname, server)
    }

    /// A static identity from existing keys (tests, imports).
    pub fn from_static_keys(
        keys: Vec<DhPrivateKey>,
        hostname: Option<&str>,
        server: bool,
    ) -> Result<Self, CryptoError> {
        if keys.is_empty() {
            return Err(CryptoError::BadSettings);
        }
        let mut cert = Vec::new();
        if let Some(h) = hostname {
            push(&mut cert, cert_opt::HOSTNAME, h.as_bytes());
        }
        if server {
            push(&mut cert, cert_opt::ACCEPTS_ANCILLARY, &[]);
        }
        for k in &keys {
            let mut v = vec![k.group().id()];
            v.extend_from_slice(k.public_key());
            push(&mut cert, cert_opt::STATIC_KEY, &v);
        }
        Ok(Self::build(cert, Keys::Static(keys)))
    }

    /// An ephemeral-DH server identity like the reference server:
    /// `01 0a`, `02 15 xx` per group (preference order), `41 0e` + 64 random
    /// bytes, which makes the fingerprint unpredictable (spec 03 §4.3).
    pub fn generate_ephemeral_server(
        groups: &[DhGroup],
        rng: &mut dyn Rng,
    ) -> Result<Self, CryptoError> {
        let groups = dedup(groups);
        if groups.is_empty() {
            return Err(CryptoError::BadSettings);
        }
        let mut cert = Vec::new();
        push(&mut cert, cert_opt::ACCEPTS_ANCILLARY, &[]);
        for &g in &groups {
            push(&mut cert, cert_opt::EPHEMERAL_GROUP, &[g.id()]);
        }
        let mut r = [0u8; CERT_RANDOMNESS];
        rng.fill(&mut r);
        push(&mut cert, cert_opt::EXTRA_RANDOMNESS, &r);
        Ok(Self::build(cert, Keys::Ephemeral(groups)))
    }

    /// An ephemeral identity with a given certificate (e.g. Cirrus's layout,
    /// test vectors). The certificate must be a valid ephemeral one.
    pub fn ephemeral_from_certificate(cert: Vec<u8>) -> Result<Self, CryptoError> {
        let c = Certificate::parse(&cert)?;
        if c.is_static() {
            return Err(CryptoError::BadCertificate);
        }
        let groups: Vec<DhGroup> = dedup(&c.groups().collect::<Vec<_>>());
        if groups.is_empty() {
            return Err(CryptoError::UnsupportedGroup);
        }
        Ok(Self::build(cert, Keys::Ephemeral(groups)))
    }

    fn build(cert: Vec<u8>, keys: Keys) -> Self {
        // Our builders never write a marker, so the canonical part is the whole certificate.
        let fingerprint = match Certificate::parse(&cert) {
            Ok(c) => c.fingerprint(),
            Err(_) => Sha256::digest(&cert).into(),
        };
        Identity {
            cert,
            fingerprint,
            keys,
        }
    }

    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    /// Our parsed certificate (always valid: we built or checked it).
    pub fn parsed(&self) -> Certificate<'_> {
        Certificate::parse(&self.cert)
            .unwrap_or_else(|_| unreachable!("identity certificates are validated when built"))
    }

    pub fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        self.fingerprint
    }

    pub fn canonical_epd(&self) -> [u8; 34] {
        canonical_epd_of(&self.fingerprint)
    }

    pub fn is_static(&self) -> bool {
        matches!(self.keys, Keys::Static(_))
    }

    /// Groups we can do, certificate order.
    pub fn groups(&self) -> Vec<DhGroup> {
        match &self.keys {
            Keys::Static(k) => k.iter().map(DhPrivateKey::group).collect(),
            Keys::Ephemeral(g) => g.clone(),
        }
    }

    /// Our static key for `group`, if we are static and have one.
    pub fn static_key(&self, group: DhGroup) -> Option<&DhPrivateKey> {
        match &self.keys {
            Keys::Static(k) => k.iter().find(|k| k.group() == group),
            Keys::Ephemeral(_) => None,
        }
    }

    /// The smallest certificate a server can answer an ancillary-data
    /// (URL) IHello with: `01 0a` and one `02 15 g` per group, no key and no
    /// randomness, so it fits in 3× the smallest IHello Flash-class clients
    /// send. `all_groups` false keeps group 2 only (what every Flash-class
    /// client keys with; our first group if we lack it). Initiators keying
    /// against it find our key in SKRC, as with any ephemeral server.
    pub fn compact_certificate(&self, all_groups: bool) -> Vec<u8> {
        let groups = self.groups();
        let pick: Vec<DhGroup> = if all_groups {
            groups
        } else if groups.contains(&DhGroup::G2) {
            vec![DhGroup::G2]
        } else {
            groups.into_iter().take(1).collect()
        };
        let mut cert = Vec::with_capacity(2 + 3 * pick.len());
        push(&mut cert, cert_opt::ACCEPTS_ANCILLARY, &[]);
        for g in pick {
            push(&mut cert, cert_opt::EPHEMERAL_GROUP, &[g.id()]);
        }
        cert
    }

    /// Responder side: does `epd` select us (spec 03 §5.2)? A malformed EPD
    /// selects nobody. Ancillary data is for the application to inspect.
    pub fn selected_by(&self, epd: &[u8]) -> bool {
        let c = self.parsed();
        match Epd::parse(epd) {
            Ok(e) => select(&e, &self.fingerprint, c.hostname(), c.accepts_ancillary()),
            Err(_) => false,
        }
    }

    /// Serialises the certificate and private exponents so that a restart
    /// keeps the same certificate, hence the same fingerprint / peer ID.
    /// Layout: magic ‖ field(cert) ‖ vlu(count) ‖ per key: u8 group ‖ field(exponent).
    /// The result holds secrets: store it with owner-only permissions.
    pub fn to_key_file_bytes(&self) -> Vec<u8> {
        let mut out = KEY_FILE_MAGIC.to_vec();
        let field = |out: &mut Vec<u8>, b: &[u8]| {
            let mut t = [0u8; vlu::MAX_LEN];
            let n = vlu::encode(b.len() as u64, &mut t);
            out.extend_from_slice(&t[..n]);
            out.extend_from_slice(b);
        };
        field(&mut out, &self.cert);
        let keys: &[DhPrivateKey] = match &self.keys {
            Keys::Static(k) => k,
            Keys::Ephemeral(_) => &[],
        };
        out.push(keys.len() as u8);
        for k in keys {
            out.push(k.group().id());
            field(&mut out, k.exponent());
        }
        out
    }

    /// Loads [`Identity::to_key_file_bytes`] output. Every static key in the
    /// certificate must be reproduced by a stored exponent.
    pub fn from_key_file_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| CryptoError::BadKeyFile;
        let mut r = Reader::new(bytes);
        if r.array::<8>().map_err(bad)? != *KEY_FILE_MAGIC {
            return Err(CryptoError::BadKeyFile);
        }
        let cert = r.field().map_err(bad)?.to_vec();
        let count = r.u8().map_err(bad)?;
        let mut keys = Vec::new();
        for _ in 0..count {
            let g =
                DhGroup::from_id(u64::from(r.u8().map_err(bad)?)).ok_or(CryptoError::BadKeyFile)?;
            let x = r.field().map_err(bad)?;
            keys.push(DhPrivateKey::from_exponent(g, x)?);
        }
        if !r.is_empty() {
            return Err(CryptoError::BadKeyFile);
        }
        let c = Certificate::parse(&cert).map_err(|_| CryptoError::BadKeyFile)?;
        if !c.is_static() {
            if !keys.is_empty() {
                return Err(CryptoError::BadKeyFile);
            }
            return Self::ephemeral_from_certificate(cert).map_err(|_| CryptoError::BadKeyFile);
        }
        // Keys in certificate order; each certificate key must match its exponent.
        let mut ordered = Vec::new();
        for o in Options::opts(c.canonical()).filter(|o| o.typ == cert_opt::STATIC_KEY) {
            let Some((gid, public)) = split_group(o.value) else {
                return Err(CryptoError::BadKeyFile);
            };
            let Some(g) = DhGroup::from_id(gid) else {
                continue;
            };
            let k = keys
                .iter()
                .find(|k| k.group() == g)
                .ok_or(CryptoError::BadKeyFile)?;
            if k.public_key() != public {
                return Err(CryptoError::BadKeyFile);
            }
            if !ordered.iter().any(|o: &DhPrivateKey| o.group() == g) {
                ordered.push(k.clone());
            }
        }
        if ordered.is_empty() {
            return Err(CryptoError::BadKeyFile);
        }
        Ok(Self::build(cert, Keys::Static(ordered)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rng::SeededRng;

    #[test]
    fn flash_layout_for_group_2() {
        let id =
            Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(3)).unwrap();
        let c = id.certificate();
        assert_eq!(c.len(), 132);
        assert_eq!(&c[..4], &[0x81, 0x02, 0x1d, 0x02]);
        assert_eq!(id.fingerprint(), <[u8; 32]>::from(Sha256::digest(c)));
        assert_eq!(&id.canonical_epd()[..2], &[0x21, 0x0f]);
        assert!(id.selected_by(&id.canonical_epd()));
        assert!(!id.selected_by(&[0x01, 0x0a]), "a client is not a server");
    }

    #[test]
    fn reference_client_layout_and_key_file() {
        let mut rng = SeededRng::new(4);
        let groups = [DhGroup::G16, DhGroup::G14, DhGroup::G2];
        let id = Identity::generate_static(&groups, Some("me.example"), false, &mut rng).unwrap();
        let c = id.parsed();
        assert_eq!(c.groups().collect::<Vec<_>>(), groups);
        assert_eq!(c.hostname(), Some(&b"me.example"[..]));
        let key_file = id.to_key_file_bytes();
        let back = Identity::from_key_file_bytes(&key_file).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_eq!(back.certificate(), id.certificate());
        assert_eq!(back.groups(), groups);
        // Truncated or tampered key files are refused, never panic.
        for cut in 0..key_file.len() {
            assert!(Identity::from_key_file_bytes(&key_file[..cut]).is_err());
        }
        let mut bad = key_file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            Identity::from_key_file_bytes(&bad).unwrap_err(),
            CryptoError::BadKeyFile
        );
    }

    #[test]
    fn ephemeral_server_layout() {
        let mut rng = SeededRng::new(5);
        let id = Identity::generate_ephemeral_server(
            &[DhGroup::G16, DhGroup::G14, DhGroup::G2],
            &mut rng,
        )
        .unwrap();
        let c = id.certificate();
        assert_eq!(
            &c[..11],
            &[
                0x01, 0x0a, 0x02, 0x15, 0x10, 0x02, 0x15, 0x0e, 0x02, 0x15, 0x02
            ]
        );
        assert_eq!(&c[11..13], &[0x41, 0x0e]);
        assert_eq!(c.len(), 13 + 64);
        assert!(!id.is_static());
        assert!(id.selected_by(&[0x01, 0x0a]));
        let other = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
        assert_ne!(other.fingerprint(), id.fingerprint());
        let back = Identity::from_key_file_bytes(&id.to_key_file_bytes()).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
    }
}
