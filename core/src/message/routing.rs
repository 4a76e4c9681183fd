//! How an address hands a message to its queues.

/// How an address hands a message to its queues.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Routing {
    /// Point to point: one queue named like the address, competing consumers.
    Anycast,
    /// Publish/subscribe: every subscription queue gets a copy.
    Multicast,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Anycast => "ANYCAST",
            Routing::Multicast => "MULTICAST",
        }
    }
}
