//! What the operator (`operator.rs`) asked and was told.
//!
//! The operator: someone using the management API during the run. Every
//! second or so it asks a node picked at random (live or not: the
//! refusals are part of the test) to purge the queue `purged`, which only
//! the producer `pp0` fills and nobody consumes. The answers are kept for
//! the checker's purge rule (`checker::check_purges`): a purge answered
//! "done" must have happened for good, whatever crashed afterwards.

use std::collections::BTreeMap;

use halyard_core::node::{AdminError, AdminReply};
use halyard_core::Millis;

use crate::rng::Rng;

/// The queue the operator purges (address `purged`, destination
/// `/queue/purged`).
pub(crate) const PURGED_QUEUE: &str = "purged";
/// Mixed into the seed for the operator's own generator, so its choices
/// draw from none of the world's.
const OPERATOR_SEED: u64 = 0x0be7_a70e_5eed_0000;

/// What the operator asked and was told.
#[derive(Default)]
pub(crate) struct Operator {
    pub(crate) rng: Option<Rng>,
    pub(crate) next_id: u64,
    /// Answers by request id: (node, time, result). The first answer to a
    /// request counts (a second would be a bug the checker need not see).
    pub(crate) answers: BTreeMap<u64, (usize, Millis, Result<AdminReply, AdminError>)>,
    pub(crate) asked: u64,
}

impl Operator {
    pub(crate) fn new(seed: u64) -> Operator {
        Operator {
            rng: Some(Rng::new(seed ^ OPERATOR_SEED)),
            ..Operator::default()
        }
    }

    /// Purged messages the operator was told about (answers "done").
    pub(crate) fn purged(&self) -> u64 {
        self.answers
            .values()
            .filter_map(|(_, _, r)| match r {
                Ok(AdminReply::Purged { purged, .. }) => Some(*purged),
                _ => None,
            })
            .sum()
    }

    pub(crate) fn refused(&self) -> u64 {
        self.answers.values().filter(|(_, _, r)| r.is_err()).count() as u64
    }
}
