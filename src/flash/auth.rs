//! tcserver's optional token convention for `connect` arguments (spec 04
//! §5.2; not part of RFC 7425). Tokens are lowercase hex of HMAC-SHA-256.
//! Over RTMFP the client may send the token hashed with the session's far
//! nonce so the token itself never crosses the wire, and the server may prove
//! it knows the token with the client's near nonce (nonces: spec 03 §11).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // Invariant: HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// App token: `hex(HMAC-SHA256(secret, app))`.
pub fn app_token(secret: &[u8], app: &str) -> String {
    hmac_hex(secret, &[app.as_bytes()])
}

/// User token: `hex(HMAC-SHA256(secret, user "@" app))`.
pub fn user_token(secret: &[u8], user: &str, app: &str) -> String {
    hmac_hex(secret, &[user.as_bytes(), b"@", app.as_bytes()])
}

/// What a client sends instead of `token`: `hex(HMAC-SHA256(farNonce, token))`,
/// keyed with its far nonce (which is the server's near nonce).
pub fn session_bound_token(nonce: &[u8], token: &str) -> String {
    hmac_hex(nonce, &[token.as_bytes()])
}

/// The server's `authToken` reply: `hex(HMAC-SHA256(clientNearNonce, token))`
/// (the client's near nonce is the server's far nonce).
pub fn server_proof(client_near_nonce: &[u8], token: &str) -> String {
    hmac_hex(client_near_nonce, &[token.as_bytes()])
}

/// Compares two tokens without an early exit on the first differing byte,
/// so timing does not reveal how much of a guess was right.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a presented token is `expected` either in clear or bound to the
/// session with `server_near_nonce` (spec 04 §5.2).
pub fn accepts(expected: &str, presented: &str, server_near_nonce: &[u8]) -> bool {
    // Evaluate both so timing does not tell which form matched.
    let clear = tokens_match(expected, presented);
    let bound = tokens_match(&session_bound_token(server_near_nonce, expected), presented);
    clear | bound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Spec 03 §13.4 (tcserver.md, recomputed by tools/worked_example.py).
    #[test]
    fn spec_vector() {
        let tok = app_token(b"supersecret", "live/12345");
        assert_eq!(
            tok,
            "df41d9cbe74f325250d6e0346dcd9e95fb837892f4a927c27cecf2664d639786"
        );
        let far = unhex("55e154b9a21eaff92499897b384e2e9314b8c1305a383b66c365eaad3d83f4a0");
        let near = unhex("cbc290212a52dad978da93870e6929a5050d838a18723620b92df9a530535442");
        let bound = session_bound_token(&far, &tok);
        assert_eq!(
            bound,
            "a762c38f376a273a583714b342ee700348882476a2350fc4e74b700411246841"
        );
        assert_eq!(
            server_proof(&near, &tok),
            "bc4e260a541aa5c6cd498f414afd7f05c76bd6d731f726df268d0b1e8bf5a58c"
        );
        assert!(accepts(&tok, &tok, &far));
        assert!(accepts(&tok, &bound, &far));
        assert!(!accepts(&tok, &bound, &near));
        assert!(!accepts(&tok, &tok[..63], &far));
    }

    #[test]
    fn user_token_is_app_token_of_user_at_app() {
        assert_eq!(user_token(b"k", "bob", "live"), app_token(b"k", "bob@live"));
        assert_ne!(user_token(b"k", "bob", "live"), app_token(b"k", "live"));
    }
}
