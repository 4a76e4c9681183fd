//! Fenced preemption's failure detector, sans-IO: a backup watches the
//! other nodes over their peer ports and suspects the live node when the
//! live's link closes or goes silent.
//!
//! A suspicion is only a hint, never a safety decision: the suspecting
//! backup fences the journal (a new producer epoch on Kafka) before it reads
//! and serves, so a live node that was only paused or cut off from the backup
//! is refused at its next write and steps down. What the watch adds is speed
//! (a SIGKILLed live is noticed when its socket closes, not after the lock
//! group's session timeout) and restraint (no churn from links that never
//! worked):
//! - a peer is suspected only after it was heard *live* on a link that then
//!   closed or stayed silent for `suspect_after_ms`: a link that never
//!   worked (a peer cut off from the start) suspects nothing, so a lasting
//!   cut cannot make two nodes take turns;
//! - one suspicion per live contact: the peer must be heard live again to
//!   be suspected again.
//!
//! Each peer sends one status line every heartbeat ([`PeerStatus::line`]).

use crate::Millis;

/// The longest status line accepted (node ids are short).
pub const STATUS_LINE_MAX: usize = 256;

/// What a node says of itself on its peer port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub node: String,
    /// `Some(epoch)` while serving clients as the live node.
    pub live_epoch: Option<u32>,
}

/// A status line that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusLineError {
    #[error("peer status line longer than {STATUS_LINE_MAX} bytes")]
    TooLong,
    #[error("not a halyard peer status line: {0:?}")]
    Malformed(String),
}

const MAGIC: &str = "HALYARD-PEER/1";

impl PeerStatus {
    /// `HALYARD-PEER/1 <node> live <epoch>\n` or `HALYARD-PEER/1 <node> backup\n`.
    pub fn line(&self) -> String {
        match self.live_epoch {
            Some(e) => format!("{MAGIC} {} live {e}\n", self.node),
            None => format!("{MAGIC} {} backup\n", self.node),
        }
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<PeerStatus, StatusLineError> {
        if line.len() > STATUS_LINE_MAX {
            return Err(StatusLineError::TooLong);
        }
        let bad = || StatusLineError::Malformed(line.chars().take(64).collect());
        let mut words = line.split(' ');
        if words.next() != Some(MAGIC) {
            return Err(bad());
        }
        let node = words.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
        let live_epoch = match (words.next(), words.next()) {
            (Some("backup"), None) => None,
            (Some("live"), Some(e)) => Some(e.parse::<u32>().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(PeerStatus {
            node: node.to_string(),
            live_epoch,
        })
    }
}

/// Why a live peer is suspected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuspectReason {
    /// Its link closed (a killed process's socket is closed by its kernel).
    LinkClosed,
    /// Nothing heard for this long.
    Silent { ms: u64 },
}

impl std::fmt::Display for SuspectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuspectReason::LinkClosed => write!(f, "its peer link closed"),
            SuspectReason::Silent { ms } => write!(f, "nothing heard for {ms} ms"),
        }
    }
}

/// What the watch tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchOutput {
    /// The live peer `node` seems gone: fence it and go live.
    Suspect {
        node: String,
        epoch: u32,
        reason: SuspectReason,
    },
    /// A peer says it is live at `epoch` (a live node hearing a newer epoch
    /// than its own has been fenced and steps down without waiting for a
    /// write to find out).
    PeerLive { node: String, epoch: u32 },
    /// A peer reported live now says it is a backup.
    PeerNotLive { node: String },
}

#[derive(Clone, Debug, Default)]
struct Slot {
    /// Link up and the peer heard on it.
    connected: bool,
    last_heard: Millis,
    /// The peer's node id and live epoch from its last line, while the
    /// suspicion is armed (heard live on this link, not suspected since).
    armed_live: Option<(String, u32)>,
    /// The epoch last reported as `PeerLive` (reported again only when it
    /// changes).
    reported_epoch: Option<u32>,
}

/// Watches a fixed set of peers (by index, as configured).
#[derive(Debug)]
pub struct PeerWatch {
    suspect_after_ms: u64,
    slots: Vec<Slot>,
    outputs: std::collections::VecDeque<WatchOutput>,
}

/// The most peers a node may watch.
pub const PEERS_MAX: usize = 16;

impl PeerWatch {
    pub fn new(peers: usize, suspect_after_ms: u64) -> PeerWatch {
        assert!(peers <= PEERS_MAX, "at most {PEERS_MAX} peers");
        assert!(suspect_after_ms > 0);
        PeerWatch {
            suspect_after_ms,
            slots: vec![Slot::default(); peers],
            outputs: Default::default(),
        }
    }

    /// A status line from peer `i`.
    pub fn heard(&mut self, now: Millis, i: usize, status: &PeerStatus) {
        let slot = &mut self.slots[i];
        slot.connected = true;
        slot.last_heard = now;
        match status.live_epoch {
            Some(epoch) => {
                slot.armed_live = Some((status.node.clone(), epoch));
                if slot.reported_epoch != Some(epoch) {
                    slot.reported_epoch = Some(epoch);
                    self.outputs.push_back(WatchOutput::PeerLive {
                        node: status.node.clone(),
                        epoch,
                    });
                }
            }
            None => {
                slot.armed_live = None;
                if slot.reported_epoch.take().is_some() {
                    self.outputs.push_back(WatchOutput::PeerNotLive {
                        node: status.node.clone(),
                    });
                }
            }
        }
    }

    /// Peer `i`'s link closed (or failed to read).
    pub fn closed(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let was = slot.connected;
        slot.connected = false;
        slot.reported_epoch = None;
        if was {
            self.suspect(i, SuspectReason::LinkClosed);
        }
    }

    /// Time passed: silent live peers become suspects.
    pub fn tick(&mut self, now: Millis) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.armed_live.is_some() && now >= s.last_heard + self.suspect_after_ms {
                let ms = now - s.last_heard;
                self.suspect(i, SuspectReason::Silent { ms });
            }
        }
    }

    fn suspect(&mut self, i: usize, reason: SuspectReason) {
        if let Some((node, epoch)) = self.slots[i].armed_live.take() {
            self.slots[i].reported_epoch = None;
            self.outputs.push_back(WatchOutput::Suspect {
                node,
                epoch,
                reason,
            });
        }
    }

    pub fn poll_output(&mut self) -> Option<WatchOutput> {
        self.outputs.pop_front()
    }

    /// When [`PeerWatch::tick`] may next have something to say.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.slots
            .iter()
            .filter(|s| s.armed_live.is_some())
            .map(|s| s.last_heard + self.suspect_after_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(node: &str, e: u32) -> PeerStatus {
        PeerStatus {
            node: node.into(),
            live_epoch: Some(e),
        }
    }

    fn backup(node: &str) -> PeerStatus {
        PeerStatus {
            node: node.into(),
            live_epoch: None,
        }
    }

    fn drain(w: &mut PeerWatch) -> Vec<WatchOutput> {
        std::iter::from_fn(|| w.poll_output()).collect()
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_refused() {
        for s in [live("a", 7), backup("node-b")] {
            let l = s.line();
            assert!(l.ends_with('\n'));
            assert_eq!(PeerStatus::parse(l.trim_end()).unwrap(), s);
        }
        for bad in [
            "",
            "HALYARD-PEER/1",
            "HALYARD-PEER/1 a",
            "HALYARD-PEER/1 a live",
            "HALYARD-PEER/1 a live x",
            "HALYARD-PEER/1 a backup 3",
            "HALYARD-PEER/1 a live 3 4",
            "HALYARD-PEER/2 a backup",
            "GET / HTTP/1.1",
        ] {
            assert!(
                matches!(PeerStatus::parse(bad), Err(StatusLineError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = format!("HALYARD-PEER/1 {} backup", "x".repeat(300));
        assert_eq!(PeerStatus::parse(&long), Err(StatusLineError::TooLong));
    }

    #[test]
    fn a_live_peer_whose_link_closes_is_suspected_once() {
        let mut w = PeerWatch::new(2, 500);
        w.heard(0, 0, &live("a", 3));
        w.heard(0, 1, &backup("c"));
        assert_eq!(
            drain(&mut w),
            vec![WatchOutput::PeerLive {
                node: "a".into(),
                epoch: 3
            }]
        );
        w.heard(100, 0, &live("a", 3));
        assert!(drain(&mut w).is_empty(), "the same epoch is reported once");
        w.closed(0);
        assert_eq!(
            drain(&mut w),
            vec![WatchOutput::Suspect {
                node: "a".into(),
                epoch: 3,
                reason: SuspectReason::LinkClosed
            }]
        );
        w.closed(0);
        w.tick(10_000);
        assert!(drain(&mut w).is_empty(), "one suspicion per live contact");
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn a_silent_live_peer_is_suspected_after_the_interval() {
        let mut w = PeerWatch::new(1, 500);
        w.heard(1_000, 0, &live("a", 3));
        drain(&mut w);
        assert_eq!(w.next_deadline(), Some(1_500));
        w.tick(1_499);
        assert!(drain(&mut w).is_empty());
        w.tick(1_600);
        assert_eq!(
            drain(&mut w),
            vec![WatchOutput::Suspect {
                node: "a".into(),
                epoch: 3,
                reason: SuspectReason::Silent { ms: 600 }
            }]
        );
        // Heard live again (it was only slow): armed again, reported again.
        w.heard(2_000, 0, &live("a", 3));
        assert_eq!(drain(&mut w).len(), 1);
        assert_eq!(w.next_deadline(), Some(2_500));
    }

    #[test]
    fn backups_and_links_that_never_worked_are_never_suspected() {
        let mut w = PeerWatch::new(2, 500);
        // Peer 1 never answers: no contact, no suspicion.
        w.closed(1);
        w.heard(0, 0, &backup("b"));
        w.tick(5_000);
        w.closed(0);
        w.tick(10_000);
        assert!(drain(&mut w).is_empty());
        // A live peer that says it stepped down is no longer a suspect.
        w.heard(10_000, 0, &live("b", 4));
        w.heard(10_100, 0, &backup("b"));
        assert_eq!(
            drain(&mut w),
            vec![
                WatchOutput::PeerLive {
                    node: "b".into(),
                    epoch: 4
                },
                WatchOutput::PeerNotLive { node: "b".into() }
            ]
        );
        w.closed(0);
        assert!(drain(&mut w).is_empty());
    }
}
