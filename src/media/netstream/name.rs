//! Stream names as `publish` and `play` carry them (spec 04 §7.1–7.2):
//! `name[?query]`, where the query holds options separated by `&`, `?` or
//! `;` (tcserver's convention), and `sha256:<hex>` names a stream by the
//! SHA-256 of its published name (a subscribe-only capability: whoever
//! knows only the hash can play, never publish).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::proto::crypto::peer_id_hex;

/// Prefix of a hashed stream name.
pub const HASH_PREFIX: &str = "sha256:";

/// A parsed stream name.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamName {
    /// The name before the query, as given (may be `sha256:<hex>`).
    pub name: String,
    /// SHA-256 of the published name: the key a server files the stream under.
    pub hash: [u8; 32],
    /// True when the name was given as `sha256:<hex>`.
    pub hashed: bool,
    /// `name=value` pairs of the query, in order (a bare key has value "").
    pub params: Vec<(String, String)>,
}

impl StreamName {
    /// `None` for an empty name or a malformed `sha256:` name.
    pub fn parse(s: &str) -> Option<Self> {
        let (name, query) = s.split_once('?').unwrap_or((s, ""));
        if name.is_empty() {
            return None;
        }
        let params = query
            .split(['&', '?', ';'])
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect();
        let (hash, hashed) = match name.strip_prefix(HASH_PREFIX) {
            Some(hex) => (parse_hash(hex)?, true),
            None => (Sha256::digest(name.as_bytes()).into(), false),
        };
        Some(Self {
            name: name.to_owned(),
            hash,
            hashed,
            params,
        })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A flag such as `asis`: present and not `0`, `no` or `false`.
    pub fn flag(&self, key: &str) -> bool {
        self.param(key)
            .is_some_and(|v| !matches!(v, "0" | "no" | "false"))
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        self.param(key)?.parse().ok().filter(|n: &f64| !n.is_nan())
    }

    /// A lifetime override in seconds, capped at 10 s or twice the default
    /// (whichever is greater), as tcserver does.
    pub fn lifetime(&self, key: &str, default: Duration) -> Duration {
        let cap = default.mul_f64(2.0).max(Duration::from_secs(10));
        match self.number(key) {
            Some(s) if s >= 0.0 => Duration::from_secs_f64(s.min(cap.as_secs_f64())),
            _ => default,
        }
    }

    /// `sha256:<hex>` of this stream (what a subscribe-only user is given).
    pub fn hash_name(&self) -> String {
        format!("{HASH_PREFIX}{}", peer_id_hex(&self.hash))
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_names_file_under_the_same_key() {
        // tcserver.md's example: the hashed name of "foo".
        let foo = StreamName::parse("foo").unwrap();
        assert_eq!(
            foo.hash_name(),
            "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        let h = StreamName::parse(&format!("{}?asis", foo.hash_name())).unwrap();
        assert!(h.hashed && h.flag("asis"));
        assert_eq!(h.hash, foo.hash);
        assert!(StreamName::parse("sha256:abc").is_none());
        assert!(StreamName::parse("").is_none());
        assert!(StreamName::parse("?asis").is_none());
    }

    #[test]
    fn query_parameters() {
        let n = StreamName::parse("cam?priority=3;asis=no&videoLifetime=100").unwrap();
        assert_eq!(n.name, "cam");
        assert_eq!(n.number("priority"), Some(3.0));
        assert!(!n.flag("asis"));
        assert!(!n.flag("missing"));
        let d = Duration::from_secs(2);
        assert_eq!(n.lifetime("videoLifetime", d), Duration::from_secs(10));
        assert_eq!(n.lifetime("audioLifetime", d), d);
        let n = StreamName::parse("cam?asis").unwrap();
        assert!(n.flag("asis"));
    }
}
