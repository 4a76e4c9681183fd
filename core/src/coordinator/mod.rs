//! The lock coordinator's decisions for one broker of a mirrored pair or
//! group (issue 13), sans-IO: which broker accepts clients, under which
//! epoch, and which peers a client receipt waits for.
//!
//! ```text
//! coord.handle(now, Input::Tick);
//! while let Some(out) = coord.poll_output() { /* Acquire, ReadState, WriteState, ... */ }
//! coord.next_deadline() // when to call handle(at, Input::Tick)
//! ```
//!
//! The rules (docs/mirroring.md, "The lock coordinator's rules"):
//!
//! - A passive broker asks for the lock every check period.
//! - Every acquisition gets a new epoch from the lock service, larger than
//!   every earlier one: the fencing token. Mirror events carry it, and a
//!   broker refuses events from an epoch older than the newest it has seen
//!   ([`EpochFence`]).
//! - Under the lock lives the state: the epoch of the last active broker and
//!   its in-sync set (the brokers that have every change it receipted). A
//!   broker that acquires the lock takes the active role only if it is in
//!   that set (or no state was written yet, or the set is empty, or an
//!   operator forced it: logged); otherwise it releases the lock and says
//!   why, until it has caught up from the active.
//! - Taking the role writes the state first (the new epoch, the in-sync set
//!   itself plus the peers it knows are caught up); only once the lock
//!   service confirmed it does the broker accept clients.
//! - A sync peer that stopped answering for the peer timeout leaves the
//!   in-sync set in the lock service before the broker's receipts stop
//!   waiting for it ([`Coordinator::required_acks`] shrinks only when the
//!   write is confirmed); a peer that caught up joins it, and receipts wait
//!   for it from the moment it joins, before the write.
//! - Losing the lock (or a refused state write, or a newer epoch seen) closes
//!   the client listener and every client connection.
//! - Failback: an active backup hands the role back (drains, releases, and
//!   holds off [`HANDBACK_HOLD_OFF_PERIODS`] check periods) once a primary
//!   that asks for it is in the in-sync set the lock service has for this
//!   epoch; the primary then takes the lock under the in-sync rule.
//!
//! Rooms: [`types`] (inputs, outputs, events, configuration), [`fence`]
//! (the epoch fence), [`machine`] (the state machine).

mod fence;
mod machine;
mod types;

#[cfg(test)]
mod failback_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use fence::{EpochFence, StaleEpoch};
pub use machine::{Coordinator, Phase};
#[cfg(feature = "planted-bugs")]
pub use types::PlantedBug;
pub use types::{
    CoordinatorConfig, CoordinatorConfigError, Event, Input, LockState, Output, WriteRefusal,
    CHECK_PERIOD_MS_DEFAULT, CHECK_PERIOD_MS_MAX, CHECK_PERIOD_MS_MIN, HANDBACK_HOLD_OFF_PERIODS,
    PEERS_MAX,
};
