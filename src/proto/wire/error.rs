use thiserror::Error;

/// Why a wire structure could not be decoded or encoded.
///
/// Every decoder in `wire` returns one of these instead of panicking; the
/// endpoint counts them by variant when it drops a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("input ended inside a field")]
    Truncated,
    #[error("variable-length integer longer than 10 bytes or above u64::MAX")]
    VluOverflow,
    #[error("a length field points past the end of its container")]
    BadLength,
    #[error("malformed socket address")]
    BadAddress,
    #[error("packet mode 0 is forbidden")]
    BadMode,
    #[error("field value out of range")]
    BadValue,
    #[error("output buffer too small")]
    BufferFull,
}
