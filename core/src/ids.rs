//! Identifiers that must never be reused across activations.
//!
//! Every message and queue id carries the activation epoch of the live that
//! minted it. Epochs only grow (each activation writes a higher one to the
//! journal after fencing the previous writer), so two lives can never hand out
//! the same id even if both believed they were live for a while.

use std::fmt;
use std::str::FromStr;

/// An id minted by the live of activation `epoch`; `seq` counts within it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub epoch: u32,
    pub seq: u64,
}

impl Id {
    pub const fn new(epoch: u32, seq: u64) -> Id {
        Id { epoch, seq }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

impl FromStr for Id {
    type Err = ();
    fn from_str(s: &str) -> Result<Id, ()> {
        let (e, q) = s.split_once(':').ok_or(())?;
        Ok(Id {
            epoch: e.parse().map_err(|_| ())?,
            seq: q.parse().map_err(|_| ())?,
        })
    }
}

/// Hands out ids for the current activation.
#[derive(Debug, Clone)]
pub struct IdGen {
    epoch: u32,
    next_seq: u64,
}

impl IdGen {
    pub fn new(epoch: u32) -> IdGen {
        IdGen { epoch, next_seq: 1 }
    }
    pub fn epoch(&self) -> u32 {
        self.epoch
    }
    pub fn next_id(&mut self) -> Id {
        let id = Id::new(self.epoch, self.next_seq);
        self.next_seq += 1;
        id
    }
}

/// A client connection, numbered by the driver.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Names one journal append so its outcome can be matched to the work waiting on it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_text() {
        let id = Id::new(7, 42);
        assert_eq!(id.to_string(), "7:42");
        assert_eq!("7:42".parse::<Id>(), Ok(id));
        assert!("7-42".parse::<Id>().is_err());
        assert!("x:1".parse::<Id>().is_err());
    }

    #[test]
    fn ids_grow_within_an_epoch_and_across_epochs() {
        let mut a = IdGen::new(1);
        let x = a.next_id();
        let y = a.next_id();
        assert!(x < y);
        let mut b = IdGen::new(2);
        assert!(y < b.next_id());
    }
}
