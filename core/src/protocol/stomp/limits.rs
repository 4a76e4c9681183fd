//! Bounds on what a STOMP peer may make the decoder hold.

/// Bounds on what a peer may make the decoder hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame: command line, header lines and body, without the NUL.
    pub frame_bytes_max: usize,
    /// Most header lines in one frame.
    pub headers_max: usize,
    /// Longest command or header line, without its EOL, before unescaping.
    pub header_line_bytes_max: usize,
    /// Most bytes [`Decoder::push`] accepts before they are decoded.
    pub pending_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frame_bytes_max: 10 * 1024 * 1024,
            headers_max: 128,
            header_line_bytes_max: 16 * 1024,
            pending_bytes_max: 16 * 1024 * 1024,
        }
    }
}
