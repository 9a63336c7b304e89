use thiserror::Error;

/// Why a crypto-profile operation failed. Packet-level failures (`BadLength`
/// through `ReplayedSseq`) all mean "this datagram does not belong to this
/// key": the caller drops it silently (spec 03 §3.2) and may count it by variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("encrypted part empty, too short or not a multiple of 16 bytes")]
    BadLength,
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("HMAC tag mismatch")]
    BadHmac,
    #[error("malformed session sequence number")]
    BadSseq,
    #[error("session sequence number already seen or too old")]
    ReplayedSseq,
    #[error("malformed or invalid certificate")]
    BadCertificate,
    #[error("malformed or invalid endpoint discriminator")]
    BadEpd,
    #[error("malformed session key component")]
    BadComponent,
    #[error("Diffie-Hellman public key rejected")]
    BadPublicKey,
    #[error("HMAC / sequence number negotiation failed")]
    Negotiation,
    #[error("Diffie-Hellman group not supported")]
    UnsupportedGroup,
    #[error("no Diffie-Hellman group in common")]
    NoCommonGroup,
    #[error("identity cannot do this (e.g. no key for the group)")]
    BadIdentity,
    #[error("malformed key file")]
    BadKeyFile,
    #[error("random generator produced no usable key")]
    RngFailure,
    #[error("invalid settings")]
    BadSettings,
}
