//! The Flash cryptography profile of RTMFP (RFC 7425, spec 03): the default
//! key, AES-128-CBC packet framing with checksum or HMAC and session sequence
//! numbers, certificates and Endpoint Discriminators, Diffie-Hellman groups
//! 2/5/14/16, and session key derivation.
//!
//! Nothing here allocates per packet: [`PacketCipher::seal`] and
//! [`PacketCipher::open`] write into caller buffers. Randomness is always
//! injected through [`crate::proto::rng::Rng`].

mod cert;
mod checksum;
mod cipher;
mod dh;
mod epd;
mod error;
mod identity;
mod keying;
mod monty;
#[cfg(target_arch = "x86_64")]
mod monty_adx;

#[cfg(test)]
mod vectors;

pub use cert::{Certificate, cert_overrides, cert_selected_by, near_wins_glare};
pub use checksum::checksum;
pub use cipher::{DEFAULT_KEY, PacketCipher};
pub use dh::{DhGroup, DhPrivateKey, SharedSecret, validate_public_key};
pub use epd::{Epd, epd_for_peer, epd_for_uri, make_epd};
pub use error::CryptoError;
pub use identity::Identity;
pub use keying::{
    CryptoSettings, InitiatorKeying, NEG_REQ, NEG_SND, NEG_SOR, PendingResponse, ResponsePlan,
    SessionKeys, peer_id, plan_response, respond, respond_deferred, respond_deferred_with,
    skic_group,
};

/// The signature every Flash endpoint sends in IIKeying/RIKeying: the single
/// byte `'X'`, meaning "no signature" (spec 03 §7).
pub const SIGNATURE: &[u8] = b"X";

/// Size of a fingerprint / peer ID: SHA-256 (spec 03 §4.2).
pub const FINGERPRINT_LEN: usize = 32;

/// Lowercase hex of a fingerprint: the Flash peer ID text form (spec 03 §6).
pub fn peer_id_hex(fp: &[u8; FINGERPRINT_LEN]) -> String {
    hex::encode(fp)
}
