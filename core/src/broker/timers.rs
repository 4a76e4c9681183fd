//! The broker's clock-driven work, with `now` handed in: releasing
//! scheduled messages whose time has come, and the periodic scan that finds
//! expired messages nobody is consuming. Both are bounded per step.

use std::ops::Bound;

use super::queue::RefState;
use super::state::Broker;
use super::types::RefKey;
use crate::ids::Id;
use crate::Millis;

impl Broker {
    /// When the earliest scheduled message becomes deliverable.
    pub fn next_scheduled(&self) -> Option<Millis> {
        self.scheduled.first().map(|(at, _, _)| *at)
    }

    /// Puts scheduled messages whose time has come (`at <= now`) in line,
    /// at most `scheduled_release_max` of them. True if more are due.
    pub fn release_scheduled(&mut self, now: Millis) -> bool {
        let max = self.config.scheduled_release_max.max(1);
        for _ in 0..max {
            let Some(&(at, qid, mid)) = self.scheduled.first() else {
                return false;
            };
            if at > now {
                return false;
            }
            self.scheduled.pop_first();
            if let Some(q) = self.queues.get_mut(&qid) {
                if q.refs.get(&mid).map(|r| r.state) == Some(RefState::Scheduled { at }) {
                    q.make_ready(mid);
                    self.dirty.insert(qid);
                }
            }
        }
        self.next_scheduled().is_some_and(|at| at <= now)
    }

    /// Whether any message held carries an expiration (the expiry scan has
    /// work only then).
    pub fn has_expiring(&self) -> bool {
        self.expiring_messages > 0
    }

    /// Dispatch left expired messages in line since the last call: the
    /// scan should run now rather than at its period.
    pub fn take_expiry_backlog(&mut self) -> bool {
        std::mem::take(&mut self.expiry_backlog)
    }

    /// One step of the expiry scan: takes ready references whose expiry
    /// time has come (`<= now`) out of line, queue by queue, at most
    /// `expiry_batch_max` pending at once, for [`Broker::take_expired`].
    /// True when every queue was scanned; false when the step's budget ran
    /// out (the next step resumes where this one stopped).
    pub fn scan_expired(&mut self, now: Millis) -> bool {
        let max = self.config.expiry_batch_max.max(1);
        let from = match self.scan_resume.take() {
            Some(id) => Bound::Included(id),
            None => Bound::Unbounded,
        };
        let queues: Vec<Id> = self
            .queues
            .range((from, Bound::Unbounded))
            .filter(|(_, q)| !q.expiring.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for qid in queues {
            let Some(q) = self.queues.get_mut(&qid) else {
                continue;
            };
            while let Some(mid) = q.due_expiring(now) {
                if self.expired.len() >= max {
                    self.scan_resume = Some(qid);
                    return false;
                }
                let Some(r) = q.unready(mid, RefState::Settling) else {
                    break;
                };
                self.expired.push(RefKey {
                    message: mid,
                    queue: qid,
                    durable: r.durable,
                });
            }
        }
        true
    }
}
