//! Paging: bounded memory for a backlog larger than memory.
//!
//! Once the messages held add up to more than `BrokerConfig::page_above_bytes`,
//! a newly stored journaled message keeps only what routing needs (address,
//! routing, durability, priority and times) and its body, headers and
//! properties live in the journal alone: the message is *paged*. Dispatch
//! stops at the first paged message of a queue and asks for it (and a few
//! after it) to be read back ([`Broker::take_page_reads`]); the node sends
//! that to the journal driver, whose answer ([`Broker::paged_in`]) puts the
//! messages back and wakes the queue. So a queue delivers in order, and only
//! the head of each queue with consumers needs to be in memory.
//!
//! A paged message is always one the journal holds (its `MessageStored` is
//! durable and no tombstone has been written for it): only messages whose
//! every reference is journaled are paged, and `check_dead` keeps the record
//! of a paged message until its last reference is gone.
//!
//! The paged stand-ins of consecutive messages with the same address and
//! times are one shared allocation, so a paged message costs its broker
//! bookkeeping only (about 330 bytes of RSS with the journal's index,
//! measured in docs/operations.md). It counts nothing against the memory
//! limit: what bounds the paged backlog is the disk its records take
//! (`--max-disk-usage`), and the bookkeeping is about a third of them.

use std::collections::btree_map::Entry as MapEntry;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::queue::ReadyKey;
use super::state::{Broker, PageFrom, MESSAGE_OVERHEAD_BYTES};
use crate::ids::Id;
use crate::message::{Body, Message};

/// Messages one queue asks for ahead of its consumers (its read-back window).
pub(crate) const PAGE_WINDOW_MESSAGES: usize = 256;
/// References one look for paged messages walks past in a queue's line.
const PAGE_SCAN_REFS_MAX: usize = 4 * PAGE_WINDOW_MESSAGES;
/// Reads in flight may always hold this fraction of the paging threshold,
/// even when memory is at the threshold.
const PAGE_READ_FLOOR_DIVISOR: u64 = 16;
/// Messages one read request names.
pub(crate) const PAGE_READ_IDS_MAX: usize = 1024;
/// Read requests in flight at once (each answered by the journal driver).
const PAGE_READS_IN_FLIGHT_MAX: usize = 4;

/// What stays in memory of a paged message: routing and times, no body,
/// headers or properties.
fn stand_in(m: &Message) -> Message {
    Message {
        address: m.address.clone(),
        routing: m.routing,
        durable: m.durable,
        priority: m.priority,
        expiration_ms: m.expiration_ms,
        deliver_at_ms: m.deliver_at_ms,
        dup_id: None,
        properties: None,
        application: Vec::new(),
        annotations: Vec::new(),
        body: Body::Bytes(Bytes::new()),
    }
}

impl Broker {
    /// Whether messages are paged now (more held than the paging threshold).
    fn paging_now(&self) -> bool {
        let above = self.config.page_above_bytes;
        above > 0 && self.bytes_held > above
    }

    /// Pages message `id` out if memory is over the threshold and the
    /// journal holds it for every reference.
    pub(crate) fn maybe_page_out(&mut self, id: Id) {
        if !self.paging_now() {
            return;
        }
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        if m.paged || !m.journaled || m.refs == 0 || m.refs != m.durable_refs {
            return;
        }
        let thin = stand_in(&m.body);
        let thin = match &self.last_stand_in {
            Some(shared) if **shared == thin => shared.clone(),
            _ => {
                let a = Arc::new(thin);
                self.last_stand_in = Some(a.clone());
                a
            }
        };
        let before = m.held_bytes();
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.body = thin;
        m.paged = true;
        let freed = before - m.held_bytes();
        debug_assert!(self.bytes_held >= freed, "bytes held would go below 0");
        self.bytes_held = self.bytes_held.saturating_sub(freed);
        self.paged_count += 1;
    }

    /// Dispatch (or a browser) met paged message `mid` of queue `qid`,
    /// in its ready line at `at` if it is there: read it (and what follows
    /// it) back.
    pub(crate) fn want_page_in(&mut self, qid: Id, mid: Id, at: Option<ReadyKey>) {
        let from = self.page_wanted.entry(qid).or_insert(PageFrom {
            message: mid,
            ready: at,
        });
        // Several stops before one read: the earliest in line wins.
        if at.is_some() && (from.ready.is_none() || at < from.ready) {
            *from = PageFrom {
                message: mid,
                ready: at,
            };
        }
    }

    /// Paged messages to read back now, in the order their queues will
    /// deliver them; each is asked for once until it comes back. Empty
    /// while `PAGE_READS_IN_FLIGHT_MAX` reads are unanswered.
    #[must_use]
    pub fn take_page_reads(&mut self) -> Vec<Id> {
        if self.page_wanted.is_empty() || self.page_reads_in_flight >= PAGE_READS_IN_FLIGHT_MAX {
            return Vec::new();
        }
        // What may come back: the room under the threshold, but at least
        // a sixteenth of it in flight (at the threshold, reading one
        // message per round trip would starve consumers), and at least
        // one message per queue (always progress).
        let above = self.config.page_above_bytes;
        let room = above.saturating_sub(self.bytes_held);
        let mut budget = room
            .max(above / PAGE_READ_FLOOR_DIVISOR)
            .saturating_sub(self.page_reading_bytes);
        let mut ids = Vec::new();
        while let Some((qid, from)) = self.page_wanted.pop_first() {
            let Some(q) = self.queues.get(&qid) else {
                continue;
            };
            let asked_before = ids.len();
            let mut window = 0;
            // The message it stopped at first (a browser's may not be in
            // the ready line), then the line from where dispatch stopped.
            let start = from
                .ready
                .as_ref()
                .map_or(Bound::Unbounded, Bound::Included);
            let line = q.ready.range_from(start).map(|(_, mid)| mid);
            for mid in std::iter::once(&from.message)
                .chain(line)
                .take(PAGE_SCAN_REFS_MAX)
            {
                if window >= PAGE_WINDOW_MESSAGES || ids.len() >= PAGE_READ_IDS_MAX {
                    break;
                }
                let Some(m) = self.messages.get(mid) else {
                    continue;
                };
                if !m.paged {
                    continue;
                }
                // What it will count once read back.
                let size = u64::from(m.size) + MESSAGE_OVERHEAD_BYTES;
                if window > 0 && size > budget {
                    break;
                }
                window += 1;
                if let MapEntry::Vacant(v) = self.page_reading.entry(*mid) {
                    v.insert((qid, size));
                    ids.push(*mid);
                    budget = budget.saturating_sub(size);
                    self.page_reading_bytes += size;
                }
            }
            if ids.len() == asked_before {
                // What it waits for is on its way for another queue (or
                // nothing was found): the next answer wakes it, so it
                // never stalls on another queue's read.
                self.page_waiting.insert(qid);
            }
            if ids.len() >= PAGE_READ_IDS_MAX {
                break;
            }
        }
        if !ids.is_empty() {
            self.page_reads_in_flight += 1;
        }
        ids
    }

    /// The journal's answer to one [`Broker::take_page_reads`]: the
    /// messages read back. Ids it did not find stay paged and are asked
    /// for again when their queue next reaches them. A message whose
    /// routing is not its stand-in's (the journal holds another message
    /// under that id) is an error and nothing is applied.
    pub fn paged_in(&mut self, found: Vec<(Id, Arc<Message>)>, asked: &[Id]) -> Result<(), String> {
        for (id, message) in &found {
            if let Some(m) = self.messages.get(id).filter(|m| m.paged) {
                if message.address != m.body.address || message.priority != m.body.priority {
                    return Err(format!(
                        "paged message {id} read back as a message to {} (stand-in for {})",
                        message.address, m.body.address
                    ));
                }
            }
        }
        self.page_reads_in_flight = self.page_reads_in_flight.saturating_sub(1);
        for (id, message) in found {
            let Some(m) = self.messages.get_mut(&id) else {
                continue;
            };
            if !m.paged {
                continue;
            }
            let before = m.held_bytes();
            m.body = message;
            m.paged = false;
            self.bytes_held += m.held_bytes() - before;
            self.paged_count -= 1;
        }
        for qid in std::mem::take(&mut self.page_waiting) {
            self.dirty.insert(qid);
        }
        for id in asked {
            if let Some((qid, size)) = self.page_reading.remove(id) {
                self.dirty.insert(qid);
                self.page_reading_bytes -= size;
            }
        }
        Ok(())
    }

    /// Messages held as paged stand-ins (body in the journal only).
    pub fn paged_messages(&self) -> usize {
        self.paged_count
    }

    /// Whether message `id` is paged (its body is in the journal only).
    pub fn is_paged(&self, id: Id) -> bool {
        self.messages.get(&id).is_some_and(|m| m.paged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::journal::{Entry, QueueDef, QueueKind, Record, Routing};

    fn message(n: usize) -> Arc<Message> {
        Arc::new(Message::new(
            "orders",
            Routing::Anycast,
            Body::Bytes(Bytes::from(vec![b'x'; n])),
        ))
    }

    fn broker(page_above: u64) -> (Broker, Id) {
        let mut b = Broker::new(BrokerConfig {
            page_above_bytes: page_above,
            ..BrokerConfig::default()
        });
        let q = Id::new(1, 1);
        b.apply(&Entry::Put(Record::QueueCreated(QueueDef {
            id: q,
            name: "orders".into(),
            address: "orders".into(),
            kind: QueueKind::Anycast,
        })));
        (b, q)
    }

    fn store(b: &mut Broker, id: Id, q: Id, size: usize) {
        b.apply(&Entry::Put(Record::MessageStored {
            id,
            queues: vec![q],
            message: message(size),
        }));
    }

    #[test]
    fn messages_past_the_threshold_are_paged_and_come_back() {
        // 1006 bytes each, plus what a message costs in memory.
        let each = 1006 + MESSAGE_OVERHEAD_BYTES;
        let (mut b, q) = broker(2 * each + 500);
        for i in 1..=5 {
            store(&mut b, Id::new(1, 10 + i), q, 1000);
        }
        // Holding the third would pass the threshold, so it and every
        // later one is paged (and counts nothing against the limit).
        let paged: Vec<bool> = (1..=5).map(|i| b.is_paged(Id::new(1, 10 + i))).collect();
        assert_eq!(paged, [false, false, true, true, true]);
        assert_eq!(b.paged_messages(), 3);
        assert_eq!(b.bytes_held(), 2 * each);
        b.check_invariants().unwrap();
        b.want_page_in(q, first_paged(&b, q), None);
        // Room for less than one more: one at a time.
        let ids = b.take_page_reads();
        assert_eq!(ids, vec![Id::new(1, 13)]);
        // Asked once: a second look finds nothing new.
        b.want_page_in(q, first_paged(&b, q), None);
        assert!(b.take_page_reads().is_empty());
        let held = b.bytes_held();
        b.paged_in(vec![(Id::new(1, 13), message(1000))], &ids)
            .unwrap();
        assert!(!b.is_paged(Id::new(1, 13)));
        assert!(b.is_paged(Id::new(1, 14)));
        assert_eq!(b.bytes_held(), held + each);
        b.check_invariants().unwrap();
        // The next, and one not found is asked for again.
        b.want_page_in(q, first_paged(&b, q), None);
        assert_eq!(b.take_page_reads(), vec![Id::new(1, 14)]);
        b.paged_in(Vec::new(), &[Id::new(1, 14)]).unwrap();
        b.want_page_in(q, first_paged(&b, q), None);
        assert_eq!(b.take_page_reads(), vec![Id::new(1, 14)]);
    }

    /// The first paged message in `q`'s ready line (where dispatch stops).
    fn first_paged(b: &Broker, q: Id) -> Id {
        let queue = b.queues.get(&q).expect("queue");
        queue
            .ready
            .values()
            .copied()
            .find(|id| b.is_paged(*id))
            .expect("a paged message")
    }

    #[test]
    fn a_queue_waiting_for_another_queues_read_is_woken_by_it() {
        let each = 1006 + MESSAGE_OVERHEAD_BYTES;
        let (mut b, q1) = broker(each + 100);
        let q2 = Id::new(1, 2);
        b.apply(&Entry::Put(Record::QueueCreated(QueueDef {
            id: q2,
            name: "audit".into(),
            address: "orders".into(),
            kind: QueueKind::Anycast,
        })));
        for i in 1..=3 {
            b.apply(&Entry::Put(Record::MessageStored {
                id: Id::new(1, 10 + i),
                queues: vec![q1, q2],
                message: message(1000),
            }));
        }
        let x = first_paged(&b, q1);
        assert_eq!(first_paged(&b, q2), x, "one message in both queues");
        b.want_page_in(q1, x, None);
        let ids = b.take_page_reads();
        assert_eq!(ids.first(), Some(&x));
        // The second queue stops at the same message, already on its way.
        b.want_page_in(q2, x, None);
        assert!(b.take_page_reads().iter().all(|id| *id != x));
        b.dirty.clear();
        let found = ids.iter().map(|id| (*id, message(1000))).collect();
        b.paged_in(found, &ids).unwrap();
        assert!(
            b.dirty.contains(&q1) && b.dirty.contains(&q2),
            "{:?}",
            b.dirty
        );
        b.check_invariants().unwrap();
    }

    #[test]
    fn no_threshold_pages_nothing() {
        let (mut b, q) = broker(0);
        for i in 1..=5 {
            store(&mut b, Id::new(1, 10 + i), q, 100_000);
        }
        assert_eq!(b.paged_messages(), 0);
    }

    #[test]
    fn a_wrong_message_read_back_is_an_error() {
        let (mut b, q) = broker(10);
        store(&mut b, Id::new(1, 11), q, 100);
        store(&mut b, Id::new(1, 12), q, 100);
        assert!(b.is_paged(Id::new(1, 12)));
        let wrong = Arc::new(Message::new(
            "other",
            Routing::Anycast,
            Body::Bytes(Bytes::new()),
        ));
        let err = b
            .paged_in(vec![(Id::new(1, 12), wrong)], &[Id::new(1, 12)])
            .unwrap_err();
        assert!(err.contains("read back as a message to other"), "{err}");
        assert!(b.is_paged(Id::new(1, 12)), "nothing applied");
    }
}
