//! How a caught-up peer joins the in-sync set without a hole, sans-IO.
//!
//! The lock service must never list a peer in sync that lacks a receipted
//! change. So a peer whose link caught up is required by receipts at once
//! (by the source itself, before the coordinator knows), and the
//! coordinator hears it caught up only once it acknowledged every group
//! written when receipts began to wait for it: every group receipted
//! before then is among those, and every later one is receipted only once
//! it has it. It stays required here until the coordinator's own required
//! set names it; from then the coordinator decides (it removes a silent
//! peer only after the lock service no longer lists it).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Join {
    /// Required here; announced once it acknowledged `until`.
    Waiting { until: u64 },
    /// The coordinator was told; required here until its set names it.
    Announced,
}

/// The peers receipts wait for: the coordinator's, and those joining.
#[derive(Debug, Default)]
pub struct Joins {
    coordinator: BTreeSet<String>,
    joining: BTreeMap<String, Join>,
}

impl Joins {
    /// A new stream (or none): nobody is required.
    pub fn clear(&mut self) {
        self.coordinator.clear();
        self.joining.clear();
    }

    /// The coordinator's required peers (`RequiredAcks`) for this stream.
    pub fn coordinator_requires(&mut self, peers: BTreeSet<String>) {
        self.joining
            .retain(|p, j| !(*j == Join::Announced && peers.contains(p)));
        self.coordinator = peers;
    }

    /// `peer`'s link caught up, having acknowledged `acked`, with `written`
    /// the newest group written. True: tell the coordinator now.
    pub fn caught_up(&mut self, peer: &str, acked: u64, written: u64) -> bool {
        if self.coordinator.contains(peer) || self.joining.contains_key(peer) {
            return false;
        }
        self.joining
            .insert(peer.to_string(), Join::Waiting { until: written });
        self.acked(peer, acked)
    }

    /// `peer` acknowledged every group up to `seq`. True: tell the
    /// coordinator now (once).
    pub fn acked(&mut self, peer: &str, seq: u64) -> bool {
        let Some(j) = self.joining.get_mut(peer) else {
            return false;
        };
        match *j {
            Join::Waiting { until } if seq >= until => {
                *j = Join::Announced;
                true
            }
            _ => false,
        }
    }

    /// `peer`'s link ended: a join not yet announced ends with it (an
    /// announced one waits for the coordinator). True if that changed
    /// who is required.
    pub fn link_ended(&mut self, peer: &str) -> bool {
        if matches!(self.joining.get(peer), Some(Join::Waiting { .. })) {
            self.joining.remove(peer);
            return !self.coordinator.contains(peer);
        }
        false
    }

    /// Who receipts wait for now.
    pub fn required(&self) -> BTreeSet<String> {
        self.coordinator
            .iter()
            .chain(self.joining.keys())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> BTreeSet<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn required_at_once_announced_only_once_it_has_what_was_written() {
        let mut j = Joins::default();
        assert!(!j.caught_up("b", 90, 100), "b lacks groups 91..=100");
        assert_eq!(j.required(), set(&["b"]), "receipts wait for b already");
        assert!(!j.acked("b", 99));
        assert!(j.acked("b", 100), "now the coordinator may list b");
        assert!(!j.acked("b", 101), "told once");
        // A required set from before the coordinator heard: b stays.
        j.coordinator_requires(set(&[]));
        assert_eq!(j.required(), set(&["b"]));
        // The coordinator names b: it decides from now on.
        j.coordinator_requires(set(&["b"]));
        j.coordinator_requires(set(&[]));
        assert_eq!(
            j.required(),
            set(&[]),
            "the coordinator removed b (silent, written out)"
        );
    }

    #[test]
    fn a_link_that_ends_before_the_announcement_ends_the_join() {
        let mut j = Joins::default();
        assert!(!j.caught_up("b", 1, 5));
        assert!(j.link_ended("b"));
        assert_eq!(j.required(), set(&[]));
        // Announced, then the link ends: still required until the
        // coordinator says otherwise (it may already list b).
        assert!(j.caught_up("c", 5, 5));
        assert!(!j.link_ended("c"));
        assert_eq!(j.required(), set(&["c"]));
    }

    #[test]
    fn a_peer_already_required_by_the_coordinator_is_not_joined_again() {
        let mut j = Joins::default();
        j.coordinator_requires(set(&["b"]));
        assert!(!j.caught_up("b", 0, 10));
        assert_eq!(j.required(), set(&["b"]));
        j.clear();
        assert_eq!(j.required(), set(&[]));
    }
}
