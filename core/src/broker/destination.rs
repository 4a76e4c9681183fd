//! Turning a STOMP `destination` into an address and a routing type,
//! following Artemis's STOMP acceptor conventions.

use thiserror::Error;

use crate::journal::Routing;

/// Longest address name accepted.
pub const ADDRESS_BYTES_MAX: usize = 255;

/// How destinations are spelled. Artemis users know `/queue/` and `/topic/`
/// from its `anycastPrefix`/`multicastPrefix` acceptor settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationConfig {
    pub anycast_prefix: String,
    pub multicast_prefix: String,
    /// Routing for a bare name on a new address with no `destination-type`.
    pub default_routing: Routing,
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig {
            anycast_prefix: "/queue/".into(),
            multicast_prefix: "/topic/".into(),
            default_routing: Routing::Anycast,
        }
    }
}

/// A resolved destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub address: String,
    pub routing: Routing,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DestinationError {
    #[error("missing destination header")]
    Missing,
    #[error("destination {0:?} names no address")]
    Empty(String),
    #[error("destination {dest:?} is longer than {ADDRESS_BYTES_MAX} bytes")]
    TooLong { dest: String },
    #[error("destination {0:?} contains a control character or whitespace")]
    BadCharacter(String),
    #[error("destination {0:?} contains wildcard characters, which are not supported")]
    Wildcard(String),
    #[error(
        "destination {0:?} names a queue of an address (address::queue), which is not supported"
    )]
    FullyQualified(String),
    #[error(
        "routing type {0:?} (destination-type or subscription-type) is not ANYCAST or MULTICAST"
    )]
    BadType(String),
    #[error("destination {dest:?} has prefix for {prefix} but destination-type says {header}")]
    Conflict {
        dest: String,
        prefix: &'static str,
        header: &'static str,
    },
}

impl DestinationConfig {
    /// Resolves `dest` (with an optional `destination-type` header).
    /// `existing` tells the routing of an address that already exists, used
    /// for bare names without a `destination-type`.
    pub fn resolve(
        &self,
        dest: Option<&str>,
        dest_type: Option<&str>,
        existing: impl Fn(&str) -> Option<Routing>,
    ) -> Result<Destination, DestinationError> {
        let dest = dest.ok_or(DestinationError::Missing)?;
        let header = match dest_type {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("ANYCAST") => Some(Routing::Anycast),
            Some(t) if t.eq_ignore_ascii_case("MULTICAST") => Some(Routing::Multicast),
            Some(t) => return Err(DestinationError::BadType(t.to_string())),
        };
        let (address, by_prefix) = if !self.anycast_prefix.is_empty()
            && dest.starts_with(&self.anycast_prefix)
        {
            (&dest[self.anycast_prefix.len()..], Some(Routing::Anycast))
        } else if !self.multicast_prefix.is_empty() && dest.starts_with(&self.multicast_prefix) {
            (
                &dest[self.multicast_prefix.len()..],
                Some(Routing::Multicast),
            )
        } else {
            (dest, None)
        };
        validate_address(dest, address)?;
        let routing = match (by_prefix, header) {
            (Some(p), Some(h)) if p != h => {
                return Err(DestinationError::Conflict {
                    dest: dest.to_string(),
                    prefix: p.as_str(),
                    header: h.as_str(),
                })
            }
            (Some(p), _) => p,
            (None, Some(h)) => h,
            (None, None) => existing(address).unwrap_or(self.default_routing),
        };
        Ok(Destination {
            address: address.to_string(),
            routing,
        })
    }

    /// The destination string a consumer sees for `address` with `routing`.
    pub fn spell(&self, address: &str, routing: Routing) -> String {
        match routing {
            Routing::Anycast => format!("{}{}", self.anycast_prefix, address),
            Routing::Multicast => format!("{}{}", self.multicast_prefix, address),
        }
    }
}

fn validate_address(dest: &str, address: &str) -> Result<(), DestinationError> {
    if address.is_empty() {
        return Err(DestinationError::Empty(dest.to_string()));
    }
    if address.len() > ADDRESS_BYTES_MAX {
        return Err(DestinationError::TooLong {
            dest: dest.chars().take(64).collect(),
        });
    }
    if address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(DestinationError::BadCharacter(dest.to_string()));
    }
    if address.contains(['*', '#', '>']) {
        return Err(DestinationError::Wildcard(dest.to_string()));
    }
    // Artemis reads `address::queue` as a fully qualified queue name,
    // which changes what a subscription consumes: refuse rather than
    // treat it as a plain name.
    if address.contains("::") {
        return Err(DestinationError::FullyQualified(dest.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<Routing> {
        None
    }

    #[test]
    fn prefixes_pick_routing() {
        let c = DestinationConfig::default();
        let d = c.resolve(Some("/queue/orders"), None, none).unwrap();
        assert_eq!(
            (d.address.as_str(), d.routing),
            ("orders", Routing::Anycast)
        );
        let d = c.resolve(Some("/topic/news"), None, none).unwrap();
        assert_eq!(
            (d.address.as_str(), d.routing),
            ("news", Routing::Multicast)
        );
        assert_eq!(c.spell("news", Routing::Multicast), "/topic/news");
    }

    #[test]
    fn destination_type_header_and_existing_address() {
        let c = DestinationConfig::default();
        let d = c.resolve(Some("news"), Some("MULTICAST"), none).unwrap();
        assert_eq!(d.routing, Routing::Multicast);
        let d = c
            .resolve(Some("news"), None, |_| Some(Routing::Multicast))
            .unwrap();
        assert_eq!(d.routing, Routing::Multicast);
        let d = c.resolve(Some("news"), None, none).unwrap();
        assert_eq!(d.routing, Routing::Anycast);
    }

    #[test]
    fn bad_destinations_are_named() {
        let c = DestinationConfig::default();
        assert_eq!(c.resolve(None, None, none), Err(DestinationError::Missing));
        assert!(matches!(
            c.resolve(Some("/queue/"), None, none),
            Err(DestinationError::Empty(_))
        ));
        assert!(matches!(
            c.resolve(Some("a b"), None, none),
            Err(DestinationError::BadCharacter(_))
        ));
        assert!(matches!(
            c.resolve(Some("a.*"), None, none),
            Err(DestinationError::Wildcard(_))
        ));
        let long = "x".repeat(300);
        assert!(matches!(
            c.resolve(Some(&long), None, none),
            Err(DestinationError::TooLong { .. })
        ));
        assert!(matches!(
            c.resolve(Some("/queue/orders::mine"), None, none),
            Err(DestinationError::FullyQualified(_))
        ));
        assert!(matches!(
            c.resolve(Some("q"), Some("BOTH"), none),
            Err(DestinationError::BadType(_))
        ));
        assert!(matches!(
            c.resolve(Some("/queue/q"), Some("MULTICAST"), none),
            Err(DestinationError::Conflict { .. })
        ));
    }
}
