//! Broker-to-broker mirroring (issue 13), sans-IO: the mirror link's
//! frames, its source and target ends, and the sync gate.
//!
//! The active broker streams every journal group it writes to each peer
//! (the groups exactly as its journal wrote them, numbered within the
//! stream of its lock epoch); a passive peer appends them to its own
//! journal and acknowledges once they are durable there. With
//! `--mirror-sync`, the node hears that a batch is durable only once every
//! peer the lock coordinator lists as in sync has it ([`gate`]). A peer
//! that is not in the stream (new, behind, or holding changes of its own
//! from when it was active) gets a snapshot of the active's journal first.
//! docs/mirroring.md says why this never loses a receipted message.
//!
//! Rooms: [`digest`] (what two brokers' queues hold, to compare), [`wire`] (frames on the AMQP codec), [`source`] (the active's
//! end), [`target`] (the passive's end), [`gate`] (durable answers held
//! for the in-sync peers), [`join`] (a caught-up peer joining the in-sync set),
//! [`hub`] (the source side's links, outbox and gate in one machine).

pub mod digest;
pub mod gate;
pub mod hub;
pub mod join;
pub mod source;
pub mod target;
pub mod wire;

pub use gate::SyncGate;
pub use hub::{HubFigures, HubNews, HubOutput, MirrorHub};
pub use join::Joins;
pub use source::{LinkError, LinkEvent, Outbox, Phase, SourceLink};
pub use target::{TargetAction, TargetError, TargetLink};
pub use wire::{encode, Delivery, MirrorDecoder, MirrorFrame, MirrorWireError, Position};
