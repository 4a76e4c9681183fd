//! Why a client frame could not be served: the connection gets an ERROR
//! frame with this message (and headers) and is closed.

/// A frame could not be served.
pub(super) struct Refused {
    pub message: String,
    pub detail: String,
    /// Extra ERROR headers (the `version` list for a version mismatch).
    pub headers: Vec<(&'static str, String)>,
}

impl Refused {
    pub fn new(message: impl Into<String>) -> Refused {
        Refused {
            message: message.into(),
            detail: String::new(),
            headers: Vec::new(),
        }
    }
}

impl<E: std::error::Error> From<E> for Refused {
    fn from(e: E) -> Refused {
        Refused::new(e.to_string())
    }
}
