//! Session key components (SKIC/SKRC, spec 03 §9), HMAC and sequence number
//! negotiation (§12), and session key derivation (§11).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::cert::Certificate;
use super::cipher::PacketCipher;
use super::dh::{DhGroup, DhPrivateKey, SharedSecret, validate_public_key};
use super::identity::Identity;
use super::{CryptoError, FINGERPRINT_LEN};
use crate::proto::rng::Rng;
use crate::proto::wire::option::{Item, Options, push};
use crate::proto::wire::vlu;

/// Negotiation flag "I will always send it" (spec 03 §12.1).
pub const NEG_SND: u8 = 0x04;
/// Negotiation flag "I will send it on request".
pub const NEG_SOR: u8 = 0x02;
/// Negotiation flag "I request that you send it".
pub const NEG_REQ: u8 = 0x01;

/// Key component option types (spec 03 §9.1).
mod comp_opt {
    pub const EPHEMERAL_KEY: u64 = 0x0d;
    pub const EXTRA_RANDOMNESS: u64 = 0x0e;
    pub const GROUP_SELECT: u64 = 0x1d;
    pub const HMAC_NEG: u64 = 0x1a;
    pub const SSEQ_NEG: u64 = 0x1e;
}

/// Randomness in a static side's component (reference and Flash: 64 bytes, spec 03 §9.1).
const COMPONENT_RANDOMNESS: usize = 64;
/// Allowed HMAC tag lengths (spec 03 §12.2).
const HMAC_LEN_RANGE: std::ops::RangeInclusive<u64> = 4..=32;
/// The SKRC prefix librtmfp insists on, and Cirrus sends: HMAC flags 0 length
/// 0, sequence flags 0, in that order (spec 06, spec 03 §9.4).
const FLASH_SKRC_PREFIX: [u8; 7] = [0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00];

/// Our crypto preferences for sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoSettings {
    /// Always append HMAC tags (advertise SND).
    pub hmac_send_always: bool,
    /// Require the far side to send HMAC tags (advertise REQ; fail if it cannot).
    pub hmac_recv_required: bool,
    /// Tag length we send, 4..=32 (reference 16, Flash 10).
    pub hmac_len: u8,
    pub sseq_send_always: bool,
    pub sseq_recv_required: bool,
    /// DH groups, most preferred first: the initiator takes the first one the
    /// responder supports; the responder accepts only these.
    pub groups: Vec<DhGroup>,
    /// As responder, answer Flash-class keying (group 2, no HMAC, no sequence
    /// numbers after negotiation) in the exact layout librtmfp requires:
    /// `03 1a 00 00 02 1e 00` then `81 02 0d 02 <128 B>` (servers, static or
    /// ephemeral) or `41 0e <64 B>` (static P2P peers) (spec 06).
    pub librtmfp_compatible_skrc: bool,
    /// Use the reference implementation's ephemeral exponent lengths
    /// ([`DhGroup::reference_exponent_bits`]) instead of our shorter group-2
    /// exponents; only needed to reproduce its byte-exact vectors.
    pub reference_exponents: bool,
    /// Use HMAC and session sequence numbers with every peer that supports
    /// them, without requiring them: request them (REQ) of a far side that
    /// offers them, and send them when asked. As responder, an initiator
    /// that only offers on request (SOR, the Flash Player and librtmfp
    /// signature) is left without, as those clients expect.
    pub prefer_integrity: bool,
}

impl Default for CryptoSettings {
    /// The reference library default: SOR for both features, 16-byte tags;
    /// strongest group first.
    fn default() -> Self {
        CryptoSettings {
            hmac_send_always: false,
            hmac_recv_required: false,
            hmac_len: 16,
            sseq_send_always: false,
            sseq_recv_required: false,
            groups: DhGroup::ALL.to_vec(),
            librtmfp_compatible_skrc: true,
            reference_exponents: false,
            prefer_integrity: false,
        }
    }
}

/// A fresh per-session key with the exponent length the settings ask for.
fn ephemeral_key(
    settings: &CryptoSettings,
    group: DhGroup,
    rng: &mut dyn Rng,
) -> Result<DhPrivateKey, CryptoError> {
    let bits = if settings.reference_exponents {
        group.reference_exponent_bits()
    } else {
        group.exponent_bits()
    };
    DhPrivateKey::generate_with_bits(group, bits, rng)
}

impl CryptoSettings {
    /// Our commands' default: the reference defaults plus
    /// [`CryptoSettings::prefer_integrity`].
    pub fn preferred() -> Self {
        CryptoSettings {
            prefer_integrity: true,
            ..Self::default()
        }
    }

    /// `tcserver`/`conncheck` style: send and require HMAC and sequence numbers (flags 0x07).
    pub fn require_all() -> Self {
        CryptoSettings {
            hmac_send_always: true,
            hmac_recv_required: true,
            sseq_send_always: true,
            sseq_recv_required: true,
            ..Self::default()
        }
    }

    /// Flash Player's client settings: SOR for both, 10-byte tags, group 2 (spec 03 §12.4).
    pub fn flash_player() -> Self {
        CryptoSettings {
            hmac_len: 10,
            groups: vec![DhGroup::G2],
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), CryptoError> {
        if !HMAC_LEN_RANGE.contains(&u64::from(self.hmac_len)) || self.groups.is_empty() {
            return Err(CryptoError::BadSettings);
        }
        Ok(())
    }
}

/// One feature's negotiation state for one side (reference `negotiateFlags`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Neg {
    pub(crate) send: bool,
    pub(crate) recv: bool,
    /// Request it (REQ) without requiring it.
    pub(crate) want: bool,
}

impl Neg {
    fn flags(self) -> u8 {
        NEG_SOR
            | if self.send { NEG_SND } else { 0 }
            | if self.recv || self.want { NEG_REQ } else { 0 }
    }

    /// Spec 03 §12.2, run once on the far side's flags.
    fn negotiate(&mut self, far: u8) -> Result<(), CryptoError> {
        if self.recv && far & (NEG_SND | NEG_SOR) == 0 {
            return Err(CryptoError::Negotiation);
        }
        // We asked (or ask now, as responder): a far side that can send it
        // will, so we receive it.
        if self.want && far & (NEG_SND | NEG_SOR) != 0 {
            self.recv = true;
        }
        self.want = false;
        if far & NEG_SND != 0 {
            self.recv = true;
        }
        if far & NEG_REQ != 0 {
            self.send = true;
        }
        Ok(())
    }
}

/// A parsed SKIC or SKRC (first option of each type counts).
#[derive(Debug, Default)]
pub(crate) struct Component<'a> {
    pub(crate) ephemeral: Option<(u64, &'a [u8])>,
    pub(crate) group_select: Option<u64>,
    pub(crate) hmac: Option<(u8, u64)>,
    pub(crate) sseq: Option<u8>,
}

pub(crate) fn parse_component(bytes: &[u8]) -> Result<Component<'_>, CryptoError> {
    let bad = CryptoError::BadComponent;
    let mut c = Component::default();
    for item in Options::new(bytes) {
        let Item::Opt(o) = item.map_err(|_| bad)? else {
            continue;
        };
        match o.typ {
            comp_opt::EPHEMERAL_KEY if c.ephemeral.is_none() => {
                let (g, n) = vlu::decode(o.value).map_err(|_| bad)?;
                c.ephemeral = Some((g, &o.value[n..]));
            }
            comp_opt::GROUP_SELECT if c.group_select.is_none() => {
                c.group_select = Some(vlu::decode(o.value).map_err(|_| bad)?.0);
            }
            comp_opt::HMAC_NEG if c.hmac.is_none() => {
                let (&flags, rest) = o.value.split_first().ok_or(bad)?;
                // The length is always written in practice; read it when present (spec 03 §12.1).
                let len = if rest.is_empty() {
                    0
                } else {
                    vlu::decode(rest).map_err(|_| bad)?.0
                };
                c.hmac = Some((flags, len));
            }
            comp_opt::SSEQ_NEG if c.sseq.is_none() => {
                c.sseq = Some(*o.value.first().ok_or(bad)?);
            }
            _ => {}
        }
    }
    Ok(c)
}

/// The DH group a SKIC names (its ephemeral key's or its group select),
/// read without any key work, so a responder can price the keying first.
pub fn skic_group(skic: &[u8]) -> Option<u64> {
    let c = parse_component(skic).ok()?;
    c.ephemeral.map(|(g, _)| g).or(c.group_select)
}

/// Runs both negotiations against a far component; returns the far tag length.
fn negotiate(hmac: &mut Neg, sseq: &mut Neg, far: &Component<'_>) -> Result<usize, CryptoError> {
    let (hflags, hlen) = far.hmac.unwrap_or((0, 0));
    hmac.negotiate(hflags)?;
    sseq.negotiate(far.sseq.unwrap_or(0))?;
    if hmac.recv && !HMAC_LEN_RANGE.contains(&hlen) {
        return Err(CryptoError::Negotiation);
    }
    // Bounded by HMAC_LEN_RANGE when used; irrelevant otherwise.
    Ok(hlen.min(32) as usize)
}

fn neg_options(out: &mut Vec<u8>, hmac: Neg, hmac_len: u8, sseq: Neg, sseq_first: bool) {
    let h = [hmac.flags(), hmac_len];
    if sseq_first {
        push(out, comp_opt::SSEQ_NEG, &[sseq.flags()]);
        push(out, comp_opt::HMAC_NEG, &h);
    } else {
        push(out, comp_opt::HMAC_NEG, &h);
        push(out, comp_opt::SSEQ_NEG, &[sseq.flags()]);
    }
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    Zeroizing::new(m.finalize().into_bytes().into())
}

/// Everything a session needs once keying completes.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub cipher: PacketCipher,
    /// `HMAC(K, SKNC)`: Flash `NetConnection.nearNonce` (spec 03 §11).
    pub near_nonce: [u8; 32],
    /// `HMAC(K, SKFC)`: Flash `NetConnection.farNonce`.
    pub far_nonce: [u8; 32],
    pub group: DhGroup,
    pub hmac_tx: bool,
    pub hmac_rx: bool,
    pub sseq_tx: bool,
    pub sseq_rx: bool,
}

/// Key derivation of spec 03 §11, in near/far terms (reference
/// `computeKeysAndNonces(sknc, skfc)`): `encrypt = HMAC(K, HMAC(SKFC, SKNC))`,
/// `decrypt = HMAC(K, HMAC(SKNC, SKFC))`, HMAC keys `HMAC(K, material)`,
/// nonces `HMAC(K, SKNC)` / `HMAC(K, SKFC)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive(
    k: &SharedSecret,
    sknc: &[u8],
    skfc: &[u8],
    group: DhGroup,
    hmac_neg: Neg,
    sseq_neg: Neg,
    tx_tag: usize,
    rx_tag: usize,
) -> SessionKeys {
    let k = k.as_bytes();
    let enc = hmac(k, &*hmac(skfc, sknc));
    let dec = hmac(k, &*hmac(sknc, skfc));
    let enc_mac = hmac(k, &*enc);
    let dec_mac = hmac(k, &*dec);
    let mut ek = Zeroizing::new([0u8; 16]);
    let mut dk = Zeroizing::new([0u8; 16]);
    ek.copy_from_slice(&enc[..16]);
    dk.copy_from_slice(&dec[..16]);
    let cipher = PacketCipher::new(
        &ek,
        &dk,
        hmac_neg.send.then_some((&enc_mac[..], tx_tag)),
        hmac_neg.recv.then_some((&dec_mac[..], rx_tag)),
        sseq_neg.send,
        sseq_neg.recv,
    );
    SessionKeys {
        cipher,
        near_nonce: *hmac(k, sknc),
        far_nonce: *hmac(k, skfc),
        group,
        hmac_tx: hmac_neg.send,
        hmac_rx: hmac_neg.recv,
        sseq_tx: sseq_neg.send,
        sseq_rx: sseq_neg.recv,
    }
}

fn initial_neg(s: &CryptoSettings) -> (Neg, Neg) {
    (
        Neg {
            send: s.hmac_send_always,
            recv: s.hmac_recv_required,
            want: s.prefer_integrity,
        },
        Neg {
            send: s.sseq_send_always,
            recv: s.sseq_recv_required,
            want: s.prefer_integrity,
        },
    )
}

/// Does this far flags byte show active support (it sends always or
/// requests), rather than the bare offer Flash-class clients make?
fn actively_supported(far: Option<u8>) -> bool {
    far.is_some_and(|f| f & (NEG_SND | NEG_REQ) != 0)
}

/// The initiator's half of keying: built when sending IIKeying, finished by
/// the RIKeying's SKRC (spec 03 §9.3, §10).
pub struct InitiatorKeying {
    skic: Vec<u8>,
    group: DhGroup,
    key: DhPrivateKey,
    /// The responder's static key for the group, when its certificate has one.
    responder_static: Option<Vec<u8>>,
    /// The shared secret with `responder_static`, computed while the
    /// IIKeying travels ([`InitiatorKeying::precompute`]).
    secret: Option<Result<super::SharedSecret, CryptoError>>,
    hmac: Neg,
    sseq: Neg,
    hmac_len: u8,
}

impl std::fmt::Debug for InitiatorKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorKeying")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl InitiatorKeying {
    /// Picks the group (first of `settings.groups` the responder certificate
    /// supports and we can key; a static identity prefers groups it holds a
    /// static key for, else falls back to an ephemeral key) and builds the SKIC.
    pub fn new(
        identity: &Identity,
        settings: &CryptoSettings,
        responder_cert: &[u8],
        rng: &mut dyn Rng,
    ) -> Result<Self, CryptoError> {
        settings.check()?;
        let cert = Certificate::parse(responder_cert)?;
        // MonaServer2 and Cumulus advertise groups 2, 5, 14 (Adobe Cirrus's
        // list) but compute with group 2 whatever the initiator selects
        // (spec 06), and Flash only ever used 2 with them: for that exact
        // list, group 2 is the only safe choice.
        let cirrus_like = !cert.is_static()
            && cert.groups().eq([DhGroup::G2, DhGroup::G5, DhGroup::G14])
            && settings.groups.contains(&DhGroup::G2);
        let common = |g: &&DhGroup| cert.supports(**g) && (!cirrus_like || **g == DhGroup::G2);
        let static_pick = settings
            .groups
            .iter()
            .filter(common)
            .find_map(|&g| identity.static_key(g).map(|k| (g, k.clone())));
        let (group, key, is_static) = match static_pick {
            Some((g, k)) => (g, k, true),
            None => {
                let g = *settings
                    .groups
                    .iter()
                    .find(common)
                    .ok_or(CryptoError::NoCommonGroup)?;
                (g, ephemeral_key(settings, g, rng)?, false)
            }
        };
        let (hmac, sseq) = initial_neg(settings);
        let mut skic = Vec::new();
        if is_static {
            // 1d (group select) · 0e (64 random) · 1a · 1e (spec 03 §9.3).
            push(&mut skic, comp_opt::GROUP_SELECT, &[group.id()]);
            let mut r = [0u8; COMPONENT_RANDOMNESS];
            rng.fill(&mut r);
            push(&mut skic, comp_opt::EXTRA_RANDOMNESS, &r);
        } else {
            // 0d (group ‖ ephemeral public key) · 1a · 1e.
            let mut v = vec![group.id()];
            v.extend_from_slice(key.public_key());
            push(&mut skic, comp_opt::EPHEMERAL_KEY, &v);
        }
        neg_options(&mut skic, hmac, settings.hmac_len, sseq, false);
        Ok(InitiatorKeying {
            skic,
            group,
            key,
            responder_static: cert.static_key(group).map(<[u8]>::to_vec),
            secret: None,
            hmac,
            sseq,
            hmac_len: settings.hmac_len,
        })
    }

    /// The SKIC to put in IIKeying.
    pub fn skic(&self) -> &[u8] {
        &self.skic
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Whether [`InitiatorKeying::precompute`] has work: the responder's
    /// certificate holds a static key for the group, so the secret does not
    /// wait for its SKRC.
    pub fn can_precompute(&self) -> bool {
        self.responder_static.is_some() && self.secret.is_none()
    }

    /// Computes the shared secret before the RIKeying arrives (it depends
    /// only on our key and the responder's static key): the exponentiation
    /// then overlaps the round trip instead of following it.
    pub fn precompute(&mut self) {
        if let (Some(k), None) = (&self.responder_static, &self.secret) {
            self.secret = Some(self.key.shared_secret(k));
        }
    }

    /// Completes keying with the responder's SKRC (spec 03 §10): negotiate,
    /// take the responder's key, compute K, derive with SKNC = SKIC, SKFC = SKRC.
    pub fn finish(self, skrc: &[u8]) -> Result<SessionKeys, CryptoError> {
        let c = parse_component(skrc)?;
        let (mut hmac, mut sseq) = (self.hmac, self.sseq);
        let rx_tag = negotiate(&mut hmac, &mut sseq, &c)?;
        let k = match (self.secret, &self.responder_static) {
            (Some(k), _) => k?,
            (None, Some(k)) => self.key.shared_secret(k)?,
            (None, None) => match c.ephemeral {
                Some((g, k)) if g == u64::from(self.group.id()) => self.key.shared_secret(k)?,
                Some(_) => return Err(CryptoError::UnsupportedGroup),
                None => return Err(CryptoError::BadComponent),
            },
        };
        Ok(derive(
            &k,
            &self.skic,
            skrc,
            self.group,
            hmac,
            sseq,
            usize::from(self.hmac_len),
            rx_tag,
        ))
    }
}

/// The responder's half up to the SKRC (spec 03 §9.4, §10): negotiate on the
/// SKIC before any DH work, check the group and the far key, build the SKRC.
/// Returns the SKRC to put in RIKeying and the DH step still to do.
pub fn respond_deferred(
    identity: &Identity,
    settings: &CryptoSettings,
    initiator_cert: &[u8],
    skic: &[u8],
    rng: &mut dyn Rng,
) -> Result<(Vec<u8>, PendingResponse), CryptoError> {
    plan_response(identity, settings, initiator_cert, skic)?.build(None, rng)
}

/// As [`respond_deferred`]; `key_in_skrc` puts our public key in the SKRC
/// even when we are static (the initiator keyed against our compact
/// certificate, which carries no key: [`Identity::compact_certificate`]).
pub fn respond_deferred_with(
    identity: &Identity,
    settings: &CryptoSettings,
    initiator_cert: &[u8],
    skic: &[u8],
    key_in_skrc: bool,
    rng: &mut dyn Rng,
) -> Result<(Vec<u8>, PendingResponse), CryptoError> {
    plan_response(identity, settings, initiator_cert, skic)?
        .with_key_in_skrc(key_in_skrc)
        .build(None, rng)
}

/// Every check of the responder's keying that costs no exponentiation:
/// settings, certificate, SKIC options, group and the far public key (range,
/// length, bit counts). What passes is a [`ResponsePlan`], whose
/// [`ResponsePlan::build`] does the Diffie-Hellman work (on any thread), so
/// a flood of garbage keys costs no exponentiation and no worker.
pub fn plan_response(
    identity: &Identity,
    settings: &CryptoSettings,
    initiator_cert: &[u8],
    skic: &[u8],
) -> Result<ResponsePlan, CryptoError> {
    settings.check()?;
    let cert = Certificate::parse(initiator_cert)?;
    let c = parse_component(skic)?;
    let (mut hmac, mut sseq) = initial_neg(settings);
    // Flash Player and librtmfp offer both on request (SOR) but librtmfp
    // implements neither: only an initiator that shows active support is
    // asked for them.
    hmac.want &= actively_supported(c.hmac.map(|(f, _)| f));
    sseq.want &= actively_supported(c.sseq);
    let rx_tag = negotiate(&mut hmac, &mut sseq, &c)?;

    // Which key of the initiator (spec 03 §9.5).
    let (gid, far_key) = match (c.ephemeral, c.group_select) {
        (Some((g, k)), None) => (g, k),
        (None, Some(g)) => {
            let group = DhGroup::from_id(g).ok_or(CryptoError::UnsupportedGroup)?;
            (g, cert.static_key(group).ok_or(CryptoError::BadComponent)?)
        }
        _ => return Err(CryptoError::BadComponent),
    };
    let group = DhGroup::from_id(gid).ok_or(CryptoError::UnsupportedGroup)?;
    if !settings.groups.contains(&group) || !identity.groups().contains(&group) {
        return Err(CryptoError::UnsupportedGroup);
    }
    validate_public_key(group, far_key)?;
    Ok(ResponsePlan {
        group,
        far_key: far_key.to_vec(),
        skic: skic.to_vec(),
        hmac,
        sseq,
        rx_tag,
        static_key: identity.static_key(group).cloned(),
        // A static *server* facing a Flash-class client must still hand out
        // its key in SKRC (see `build`); a static *peer* must not.
        static_server: identity.is_static() && identity.parsed().accepts_ancillary(),
        key_in_skrc: false,
        is_static: identity.is_static(),
        librtmfp_compatible_skrc: settings.librtmfp_compatible_skrc,
        hmac_len: settings.hmac_len,
        exponent_bits: if settings.reference_exponents {
            group.reference_exponent_bits()
        } else {
            group.exponent_bits()
        },
    })
}

/// A checked IIKeying awaiting the responder's Diffie-Hellman work
/// ([`plan_response`]); owns everything it needs, so it can move to a
/// worker thread.
#[derive(Debug)]
pub struct ResponsePlan {
    group: DhGroup,
    far_key: Vec<u8>,
    skic: Vec<u8>,
    hmac: Neg,
    sseq: Neg,
    rx_tag: usize,
    static_key: Option<DhPrivateKey>,
    static_server: bool,
    is_static: bool,
    librtmfp_compatible_skrc: bool,
    hmac_len: u8,
    exponent_bits: u32,
    /// Our key goes in the SKRC even if static (see `with_key_in_skrc`).
    key_in_skrc: bool,
}

impl ResponsePlan {
    /// Puts our public key in the SKRC even when we are static: the
    /// initiator keyed against our compact certificate, which has none
    /// ([`Identity::compact_certificate`]).
    pub fn with_key_in_skrc(mut self, yes: bool) -> Self {
        self.key_in_skrc = yes;
        self
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Whether the responder answers with a fresh (ephemeral) key, which
    /// [`ResponsePlan::build`] generates unless handed one to reuse.
    pub fn is_ephemeral(&self) -> bool {
        self.static_key.is_none()
    }

    /// Our key (the static one, `reuse` for an ephemeral responder when
    /// given, else a fresh one) and the SKRC; the shared secret is left to
    /// [`PendingResponse::finish`].
    pub fn build(
        self,
        reuse: Option<DhPrivateKey>,
        rng: &mut dyn Rng,
    ) -> Result<(Vec<u8>, PendingResponse), CryptoError> {
        let group = self.group;
        let (hmac, sseq) = (self.hmac, self.sseq);
        let ours = match (self.static_key, reuse) {
            (Some(k), _) => k,
            (None, Some(k)) if k.group() == group => k,
            (None, _) => DhPrivateKey::generate_with_bits(group, self.exponent_bits, rng)?,
        };
        let flash_class = self.librtmfp_compatible_skrc
            && group == DhGroup::G2
            && !(hmac.send || hmac.recv || sseq.send || sseq.recv)
            && ours.public_key().len() == group.prime_len();
        let mut skrc = Vec::new();
        if flash_class {
            skrc.extend_from_slice(&FLASH_SKRC_PREFIX);
        } else {
            // 1e · 1a (reference order, spec 03 §9.4).
            neg_options(&mut skrc, hmac, self.hmac_len, sseq, true);
        }
        // A static peer must not repeat its key here: librtmfp's P2P
        // initiator takes the key from the certificate and wants exactly
        // `41 0e <64 B>` (spec 06).
        if self.is_static && !(flash_class && self.static_server) && !self.key_in_skrc {
            let mut r = [0u8; COMPONENT_RANDOMNESS];
            rng.fill(&mut r);
            push(&mut skrc, comp_opt::EXTRA_RANDOMNESS, &r);
        } else {
            // Flash-class initiators (librtmfp, Flash Player) never read our
            // certificate: they take the DH key from SKRC offset 11 whatever
            // we are (spec 06). A static responder therefore repeats its
            // static key here; initiators that keyed with the certificate's
            // copy ignore this option (the reference only reads it when it
            // needs a key), so both readings compute the same secret.
            let mut v = vec![group.id()];
            v.extend_from_slice(ours.public_key());
            push(&mut skrc, comp_opt::EPHEMERAL_KEY, &v);
        }
        let pending = PendingResponse {
            ours,
            far_key: self.far_key,
            skrc: skrc.clone(),
            skic: self.skic,
            group,
            hmac,
            sseq,
            tx_tag: usize::from(self.hmac_len),
            rx_tag: self.rx_tag,
        };
        Ok((skrc, pending))
    }
}

/// The responder's keying with the Diffie-Hellman step still to do: the
/// SKRC does not depend on the shared secret, so a server can send its
/// RIKeying first and compute while the initiator computes too.
pub struct PendingResponse {
    ours: DhPrivateKey,
    far_key: Vec<u8>,
    skrc: Vec<u8>,
    skic: Vec<u8>,
    group: DhGroup,
    hmac: Neg,
    sseq: Neg,
    tx_tag: usize,
    rx_tag: usize,
}

impl PendingResponse {
    /// Our key pair: an ephemeral responder may keep it for reuse.
    pub fn key(&self) -> &DhPrivateKey {
        &self.ours
    }

    /// The shared secret and the session keys (spec 03 §10–§11).
    pub fn finish(self) -> Result<SessionKeys, CryptoError> {
        let k = self.ours.shared_secret(&self.far_key)?;
        Ok(derive(
            &k,
            &self.skrc,
            &self.skic,
            self.group,
            self.hmac,
            self.sseq,
            self.tx_tag,
            self.rx_tag,
        ))
    }
}

/// The responder's half (spec 03 §9.4, §10): negotiate on the SKIC before any
/// DH work, check the group, compute K, build the SKRC, derive with
/// SKNC = SKRC, SKFC = SKIC. Returns the SKRC to put in RIKeying.
pub fn respond(
    identity: &Identity,
    settings: &CryptoSettings,
    initiator_cert: &[u8],
    skic: &[u8],
    rng: &mut dyn Rng,
) -> Result<(Vec<u8>, SessionKeys), CryptoError> {
    let (skrc, pending) = respond_deferred(identity, settings, initiator_cert, skic, rng)?;
    Ok((skrc, pending.finish()?))
}

/// Peer ID of a certificate's owner, or an error for an invalid certificate.
pub fn peer_id(cert: &[u8]) -> Result<[u8; FINGERPRINT_LEN], CryptoError> {
    Ok(Certificate::parse(cert)?.fingerprint())
}
