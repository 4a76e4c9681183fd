//! The target end of one mirror link (a passive broker, from the active
//! one), sans-IO: which source it accepts (the epoch fence), what to do
//! with each transfer, and when to acknowledge.
//!
//! Groups of the stream are applied in order, each once: a group at or
//! before the position the journal holds is acknowledged without being
//! applied again (the source resends what it did not see acknowledged);
//! a gap closes the link (the source reconnects and the position decides
//! again). A snapshot replaces the whole journal, and its end is the new
//! position. Every acknowledgement follows the driver's word that what it
//! acknowledges is durable.

use std::collections::VecDeque;

use super::source::WINDOW_MAX;
use super::wire::{Delivery, MirrorFrame, Position};
use crate::coordinator::{EpochFence, StaleEpoch};
use crate::journal::group_commit::EncodedEntry;

/// What the driver does for the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAction {
    /// Append these entries to the journal as one batch, durably; the
    /// journal then holds the stream up to `position`. Then call
    /// [`TargetLink::durable`] with `delivery`.
    Append {
        delivery: u32,
        batches: Vec<Vec<EncodedEntry>>,
        position: Position,
    },
    /// A snapshot starts: write what follows into a new journal.
    SnapshotBegin,
    /// Part of the snapshot, for the new journal (durable when
    /// `durable(delivery)` is called; it may be at the snapshot's end).
    SnapshotChunk {
        delivery: u32,
        batches: Vec<Vec<EncodedEntry>>,
    },
    /// The snapshot is whole: make the new journal the journal, at
    /// `position`, durably; then `durable(delivery)`.
    SnapshotEnd { delivery: u32, position: Position },
}

/// Why the link closes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    StaleEpoch(#[from] StaleEpoch),
    #[error("the source sent {0} before its hello")]
    NoHello(&'static str),
    #[error("group {got} after group {had}: a gap in the stream")]
    Gap { had: u64, got: u64 },
    #[error("a snapshot chunk or end outside a snapshot's order")]
    SnapshotOrder,
    #[error("the source sent {0}, which a source does not send")]
    Unexpected(&'static str),
    #[error("this broker is active: it takes no mirror stream")]
    Active,
    #[error("the source closed the link: {0}")]
    Closed(String),
}

/// See the module documentation.
#[derive(Debug)]
pub struct TargetLink {
    node: String,
    /// The stream position the journal holds (what was handed to the driver).
    position: Option<Position>,
    /// The source's epoch, once it said hello.
    epoch: Option<u64>,
    in_snapshot: bool,
    /// Said in the welcome: this broker asks for the active role back once
    /// in sync (a primary with failback allowed).
    prefers_active: bool,
    out: VecDeque<MirrorFrame>,
    actions: VecDeque<TargetAction>,
}

impl TargetLink {
    /// A link into `node`'s journal, which holds the stream up to
    /// `position` (`None`: nothing the source can resume from).
    pub fn new(node: &str, position: Option<Position>) -> TargetLink {
        TargetLink {
            node: node.to_string(),
            position,
            epoch: None,
            in_snapshot: false,
            prefers_active: false,
            out: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// Whether the welcome asks for the active role back once in sync
    /// (failback: a primary with `--allow-failback`).
    pub fn prefers_active(mut self, yes: bool) -> TargetLink {
        self.prefers_active = yes;
        self
    }

    /// The source's lock epoch, once known.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// A frame from the source. `fence` holds the newest epoch this broker
    /// has seen (its own acquisitions and every source's).
    pub fn on_frame(
        &mut self,
        frame: MirrorFrame,
        fence: &mut EpochFence,
    ) -> Result<(), TargetError> {
        match frame {
            MirrorFrame::Hello { epoch, .. } => {
                fence.admit(epoch)?;
                self.epoch = Some(epoch);
                self.out.push_back(MirrorFrame::Welcome {
                    node: self.node.clone(),
                    position: self.position,
                    prefers_active: self.prefers_active,
                });
                self.out
                    .push_back(MirrorFrame::Credit { credit: WINDOW_MAX });
            }
            MirrorFrame::Transfer { delivery, what } => {
                let epoch = self.epoch.ok_or(TargetError::NoHello("a transfer"))?;
                // A newer epoch seen since the hello (this broker took the
                // lock, or another source said hello) ends this stream.
                fence.admit(epoch)?;
                self.on_transfer(epoch, delivery, what)?;
            }
            MirrorFrame::Heartbeat | MirrorFrame::Credit { .. } => {}
            MirrorFrame::Close { error } => {
                return Err(TargetError::Closed(
                    error.unwrap_or_else(|| "no reason".into()),
                ))
            }
            MirrorFrame::Welcome { .. } => return Err(TargetError::Unexpected("a welcome")),
            MirrorFrame::Ack { .. } => return Err(TargetError::Unexpected("an ack")),
        }
        Ok(())
    }

    fn on_transfer(
        &mut self,
        epoch: u64,
        delivery: u32,
        what: Delivery,
    ) -> Result<(), TargetError> {
        match what {
            Delivery::Batch { seq, batches } => {
                if self.in_snapshot {
                    return Err(TargetError::SnapshotOrder);
                }
                let had = match self.position {
                    Some(p) if p.epoch == epoch => p.seq,
                    _ => return Err(TargetError::Gap { had: 0, got: seq }),
                };
                if seq <= had {
                    // Applied before; its ack was lost.
                    self.out.push_back(MirrorFrame::Ack {
                        first: delivery,
                        last: delivery,
                    });
                } else if seq == had + 1 {
                    let position = Position { epoch, seq };
                    self.position = Some(position);
                    self.actions.push_back(TargetAction::Append {
                        delivery,
                        batches,
                        position,
                    });
                } else {
                    return Err(TargetError::Gap { had, got: seq });
                }
            }
            Delivery::SnapshotChunk { batches } => {
                self.begin_snapshot();
                self.actions
                    .push_back(TargetAction::SnapshotChunk { delivery, batches });
            }
            Delivery::SnapshotEnd { seq } => {
                self.begin_snapshot();
                self.in_snapshot = false;
                let position = Position { epoch, seq };
                self.position = Some(position);
                self.actions
                    .push_back(TargetAction::SnapshotEnd { delivery, position });
            }
        }
        Ok(())
    }

    fn begin_snapshot(&mut self) {
        if !self.in_snapshot {
            self.in_snapshot = true;
            // Until the snapshot is whole, the journal holds no position.
            self.position = None;
            self.actions.push_back(TargetAction::SnapshotBegin);
        }
    }

    /// What `delivery` asked for is durable: acknowledge it.
    pub fn durable(&mut self, delivery: u32) {
        self.out.push_back(MirrorFrame::Ack {
            first: delivery,
            last: delivery,
        });
    }

    pub fn poll_action(&mut self) -> Option<TargetAction> {
        self.actions.pop_front()
    }

    pub fn poll_frame(&mut self) -> Option<MirrorFrame> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn e() -> Vec<Vec<EncodedEntry>> {
        vec![vec![EncodedEntry {
            key: Bytes::from_static(b"k"),
            value: None,
        }]]
    }

    fn batch(delivery: u32, seq: u64) -> MirrorFrame {
        MirrorFrame::Transfer {
            delivery,
            what: Delivery::Batch { seq, batches: e() },
        }
    }

    fn hello(epoch: u64) -> MirrorFrame {
        MirrorFrame::Hello {
            node: "a".into(),
            epoch,
        }
    }

    #[test]
    fn the_welcome_says_whether_this_broker_asks_for_failback() {
        for yes in [false, true] {
            let mut fence = EpochFence::new();
            let mut t = TargetLink::new("b", None).prefers_active(yes);
            t.on_frame(hello(1), &mut fence).unwrap();
            assert!(matches!(
                t.poll_frame(),
                Some(MirrorFrame::Welcome { prefers_active, .. }) if prefers_active == yes
            ));
        }
    }

    #[test]
    fn groups_apply_once_in_order_and_repeats_are_only_acknowledged() {
        let mut fence = EpochFence::new();
        let mut t = TargetLink::new("b", Some(Position { epoch: 3, seq: 4 }));
        t.on_frame(hello(3), &mut fence).unwrap();
        assert!(matches!(
            t.poll_frame(),
            Some(MirrorFrame::Welcome {
                position: Some(Position { epoch: 3, seq: 4 }),
                ..
            })
        ));
        t.on_frame(batch(0, 4), &mut fence).unwrap();
        assert_eq!(t.poll_action(), None);
        t.on_frame(batch(1, 5), &mut fence).unwrap();
        assert!(matches!(
            t.poll_action(),
            Some(TargetAction::Append {
                delivery: 1,
                position: Position { epoch: 3, seq: 5 },
                ..
            })
        ));
        assert_eq!(
            t.on_frame(batch(2, 7), &mut fence),
            Err(TargetError::Gap { had: 5, got: 7 })
        );
    }

    #[test]
    fn an_older_epoch_is_refused() {
        let mut fence = EpochFence::new();
        fence.admit(9).unwrap();
        let mut t = TargetLink::new("b", None);
        assert!(matches!(
            t.on_frame(hello(8), &mut fence),
            Err(TargetError::StaleEpoch(_))
        ));
    }

    #[test]
    fn a_newer_epoch_seen_mid_stream_ends_the_old_stream() {
        let mut fence = EpochFence::new();
        let mut t = TargetLink::new("b", Some(Position { epoch: 3, seq: 0 }));
        t.on_frame(hello(3), &mut fence).unwrap();
        fence.admit(4).unwrap();
        assert!(t.on_frame(batch(0, 1), &mut fence).is_err());
    }

    #[test]
    fn a_snapshot_replaces_the_position() {
        let mut fence = EpochFence::new();
        let mut t = TargetLink::new("b", Some(Position { epoch: 1, seq: 8 }));
        t.on_frame(hello(2), &mut fence).unwrap();
        t.on_frame(
            MirrorFrame::Transfer {
                delivery: 0,
                what: Delivery::SnapshotChunk { batches: e() },
            },
            &mut fence,
        )
        .unwrap();
        t.on_frame(
            MirrorFrame::Transfer {
                delivery: 1,
                what: Delivery::SnapshotEnd { seq: 6 },
            },
            &mut fence,
        )
        .unwrap();
        let actions: Vec<TargetAction> = std::iter::from_fn(|| t.poll_action()).collect();
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[0], TargetAction::SnapshotBegin);
        assert_eq!(
            actions[2],
            TargetAction::SnapshotEnd {
                delivery: 1,
                position: Position { epoch: 2, seq: 6 }
            }
        );
        t.on_frame(batch(2, 7), &mut fence).unwrap();
        assert!(matches!(t.poll_action(), Some(TargetAction::Append { .. })));
    }

    #[test]
    fn a_batch_from_a_stream_the_journal_is_not_in_is_a_gap() {
        let mut fence = EpochFence::new();
        let mut t = TargetLink::new("b", None);
        t.on_frame(hello(1), &mut fence).unwrap();
        assert!(matches!(
            t.on_frame(batch(0, 1), &mut fence),
            Err(TargetError::Gap { .. })
        ));
    }
}
