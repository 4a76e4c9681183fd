//! Live/backup activation: the state diagram ([`state`]) and the node's
//! moves along it ([`transitions`]).
//!
//! ```text
//! NotStarted --start--> Waiting --lock acquired--> Loading --journal read--> Activating --activation durable--> Live
//!                          ^                                                                                   |
//!                          +---- fenced / journal failed / lock lost / failback (hand back) / load failed ----+
//! ```
//!
//! Safety never depends on timing: a node only serves clients after it has
//! fenced every older writer at the journal and read the journal to its end,
//! and a fenced node stops at its next write.

mod state;
mod transitions;
pub mod watch;

pub use state::{AfterDrain, HaState, Role};
