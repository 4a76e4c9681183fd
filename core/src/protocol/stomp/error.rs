//! Why bytes are not valid STOMP.

/// Why a byte stream is not valid STOMP. The `Display` text is one short
/// line, fit for the `message` header of an ERROR frame.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("header line without ':'")]
    MissingColon,
    #[error("empty header name")]
    EmptyHeaderName,
    #[error("invalid escape sequence \"{0}\" in header")]
    InvalidEscape(String),
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    #[error("more than {max} headers")]
    TooManyHeaders { max: usize },
    #[error("header line longer than {max} bytes")]
    HeaderLineTooLong { max: usize },
    #[error("frame larger than {max} bytes")]
    FrameTooLarge { max: usize },
    #[error("invalid content-length {0:?}")]
    BadContentLength(String),
    /// The byte after a `content-length` body is not NUL. (Without
    /// `content-length` the body simply runs to the first NUL, and a frame
    /// that never has one ends in [`DecodeError::FrameTooLarge`].)
    #[error("frame body not terminated by NUL")]
    MissingNul,
    #[error("more than {max} bytes buffered")]
    PendingTooLarge { max: usize },
}
