//! The journal pipeline: submitting work with its batch, completing it in
//! order once durable, and the housekeeping batch after every input.

use std::sync::Arc;

use super::config::PlantedBug;
use super::node::Node;
use super::ops::{OpError, SubscribeOp, SubscribeTarget};
use super::ports::{JournalRequest, Output};
use super::work::{Effects, Pending, Work};
use crate::broker::{Broker, ConsumerFilter, ConsumerSpec, RefKey, Settled};
use crate::ha::HaState;
use crate::ids::{Id, Ticket};
use crate::journal::{Entry, QueueKind, Record};

/// Rounds of deliver-then-housekeep after one input. Completing work can
/// make deliveries, auto-acks and tombstones, which complete more work when
/// nothing is journaled; a few rounds always settle it.
const AFTER_INPUT_ROUNDS_MAX: usize = 8;

impl Node {
    pub(crate) fn submit(&mut self, entries: Vec<Entry>, mut work: Work) {
        let entries = Arc::new(entries);
        let publish = match &mut work {
            Work::Op { effects, .. }
            | Work::Admin { effects, .. }
            | Work::Ingest { effects, .. } => std::mem::take(&mut effects.publish),
            _ => Vec::new(),
        };
        let ticket = if entries.is_empty() && publish.is_empty() {
            None
        } else {
            let t = Ticket(self.next_ticket);
            self.next_ticket += 1;
            self.counters.bridge_records_out += publish.len() as u64;
            self.outputs
                .push_back(Output::Journal(JournalRequest::Append {
                    ticket: t,
                    entries: Arc::clone(&entries),
                    publish,
                }));
            self.counters.journal_batches += 1;
            self.counters.journal_entries += entries.len() as u64;
            Some(t)
        };
        if let Some(c) = work.conn().and_then(|c| self.conns.get_mut(&c)) {
            c.inflight += 1;
        }
        let ticket_done = ticket.is_none()
            || (self.bug(PlantedBug::ReceiptBeforeDurable) && self.state == HaState::Live);
        self.pipeline.push_back(Pending {
            ticket,
            done: ticket_done,
            entries,
            work,
            submitted_at: self.now,
        });
        // Work without a journal batch still waits for its turn.
        self.complete_ready();
    }

    pub(crate) fn on_durable(&mut self, ticket: Ticket) {
        self.note_answered(ticket);
        if let Some(p) = self.pipeline.iter_mut().find(|p| p.ticket == Some(ticket)) {
            p.done = true;
            let waited = self.now.saturating_sub(p.submitted_at);
            self.counters.journal_latency.observe(waited);
        }
        self.complete_ready();
    }

    /// The driver's promise: appends are answered in the order they were
    /// issued. A broken promise would reorder receipts and state changes.
    pub(crate) fn note_answered(&mut self, ticket: Ticket) {
        assert!(
            ticket.0 < self.next_ticket,
            "journal answered {ticket}, which was never issued (next is t{})",
            self.next_ticket
        );
        if let Some(last) = self.last_answered {
            assert!(
                ticket > last,
                "journal answered {ticket} after {last}: appends must complete in the order issued"
            );
        }
        self.last_answered = Some(ticket);
    }

    pub(crate) fn complete_ready(&mut self) {
        while self.pipeline.front().is_some_and(|p| p.done) {
            let Some(p) = self.pipeline.pop_front() else {
                break;
            };
            for e in p.entries.iter() {
                self.broker.apply(e);
            }
            if let Some(c) = p.work.conn().and_then(|c| self.conns.get_mut(&c)) {
                c.inflight = c.inflight.saturating_sub(1);
            }
            if let Work::Op {
                tag: Some(_),
                effects: Effects { send: true, .. },
                ..
            } = &p.work
            {
                let waited = self.now.saturating_sub(p.submitted_at);
                self.counters.send_receipt_latency.observe(waited);
            }
            self.finish_work(p.work);
        }
        if matches!(self.state, HaState::Draining { .. }) {
            self.maybe_finish_drain(false);
        }
    }

    /// Runs after every input: deliver, batch housekeeping, resume readers.
    pub(crate) fn after_input(&mut self) {
        // Nothing may be written before the activation record.
        if !matches!(
            self.state,
            HaState::Activating | HaState::Live | HaState::Draining { .. }
        ) {
            return;
        }
        if self.state == HaState::Live {
            // More than one step's worth due: the deadline says now.
            self.broker.release_scheduled(self.now);
        }
        // Loop because completing work can make deliveries, auto-acks and
        // tombstones, which complete more work when nothing is journaled.
        let mut settled = false;
        for _ in 0..AFTER_INPUT_ROUNDS_MAX {
            if matches!(self.state, HaState::Live | HaState::Draining { .. }) {
                self.dispatch();
            }
            self.move_expired();
            for (id, queues) in self.broker.take_dead() {
                self.housekeeping
                    .extend(Broker::tombstones_for(id, &queues));
            }
            for key in self.broker.take_dead_dups() {
                self.housekeeping.push(Entry::Tombstone(key));
            }
            if self.housekeeping.is_empty()
                && self.housekeeping_volatile.is_empty()
                && self.housekeeping_moves.is_empty()
            {
                settled = true;
                break;
            }
            let entries = std::mem::take(&mut self.housekeeping);
            let volatile = std::mem::take(&mut self.housekeeping_volatile);
            let moves = std::mem::take(&mut self.housekeeping_moves);
            self.submit(entries, Work::Housekeeping { volatile, moves });
        }
        // Never silently: work left here waits for the next input, which
        // is correct but means a chain of completions longer than expected.
        debug_assert!(
            settled,
            "after_input did not settle in {AFTER_INPUT_ROUNDS_MAX} rounds"
        );
        if !settled {
            tracing::warn!(
                rounds = AFTER_INPUT_ROUNDS_MAX,
                "housekeeping did not settle within one input; continuing on the next"
            );
        }
        self.request_page_reads();
        self.resume_readers();
        if self.state == HaState::Live {
            self.bridge_note_subscriptions();
        }
    }

    pub(crate) fn finish_work(&mut self, work: Work) {
        match work {
            Work::Activation { epoch } => self.became_live(epoch),
            Work::Admin { id, reply, effects } => {
                self.apply_effects(effects);
                self.admin_answer(id, Ok(reply));
            }
            Work::Op { conn, tag, effects } => {
                self.apply_effects(effects);
                if let Some(tag) = tag {
                    self.complete_op(conn, tag, Ok(()));
                }
            }
            Work::Subscribe {
                conn,
                tag,
                req,
                queue,
                filter,
            } => {
                if self.conns.contains_key(&conn) {
                    let result = self.attach(conn, &req, queue.as_deref(), *filter);
                    self.complete_op(conn, tag, result);
                }
            }
            Work::SendInTurn { conn, bytes, close } => {
                if !bytes.is_empty() {
                    self.send_bytes(conn, bytes);
                }
                if close {
                    self.close_conn(conn);
                }
            }
            Work::Ingest { position, effects } => {
                self.apply_effects(effects);
                self.ingested(*position);
            }
            Work::Housekeeping { volatile, moves } => {
                for key in volatile {
                    self.broker.drop_volatile(key);
                }
                for (key, to) in moves {
                    self.broker.move_volatile(key, to);
                }
            }
        }
    }

    fn apply_effects(&mut self, effects: Effects) {
        for s in effects.sends {
            self.broker.add_volatile(s.id, &s.message, &s.queues);
            if let Some(conn) = s.origin {
                self.broker.note_origin(s.id, conn);
            }
        }
        for key in effects.drops {
            self.broker.drop_volatile(key);
        }
        for (key, to) in effects.moves {
            self.broker.move_volatile(key, to);
        }
        for d in effects.dups {
            self.planned_dups.remove(&d);
        }
        if !effects.forward.is_empty() {
            self.forward(effects.forward, false);
        }
    }

    /// Attaches a consumer whose turn in the pipeline has come.
    fn attach(
        &mut self,
        conn: crate::ids::ConnId,
        req: &SubscribeOp,
        queue: Option<&str>,
        filter: ConsumerFilter,
    ) -> Result<(), OpError> {
        let queue = match (queue, &req.target) {
            (Some(name), _) => self
                .broker
                .queue_by_name(name)
                .map(|q| q.id)
                .ok_or_else(|| OpError::NoQueue(name.to_string()))?,
            (
                None,
                SubscribeTarget::Topic {
                    address,
                    shared_volatile: Some(name),
                    ..
                },
            ) => {
                let id = self.ids.next_id();
                self.broker.shared_volatile_queue(name, address, id)
            }
            (None, SubscribeTarget::Topic { address, .. }) => {
                let id = self.ids.next_id();
                self.broker.create_connection_queue(conn, address, id)
            }
            (None, SubscribeTarget::Queue { address }) => {
                return Err(OpError::NoQueue(address.clone()))
            }
        };
        let shared = matches!(
            req.target,
            SubscribeTarget::Topic { shared: true, .. }
                | SubscribeTarget::Topic {
                    shared_volatile: Some(_),
                    ..
                }
        );
        self.broker.subscribe(
            conn,
            queue,
            ConsumerSpec {
                sub_id: req.sub_id.clone(),
                ack_mode: req.ack,
                window_bytes: req.window_bytes,
                window_messages: req.window_messages,
                credit: req.credit,
                shared,
                browse: req.browse,
                filter,
                destination: req.destination.clone(),
            },
        )?;
        Ok(())
    }

    /// Journal entries and in-memory moves that take settling references to
    /// the dead-letter queue.
    pub(crate) fn dead_letter(&mut self, keys: &[RefKey]) -> (Vec<Entry>, Vec<(RefKey, Id)>) {
        let dla = self.config.broker.dead_letter_address.clone();
        self.broker.count_settled(keys, Settled::DeadLettered);
        self.move_refs(&dla, keys)
    }

    /// Journal entries and in-memory moves that take settling references to
    /// the anycast queue of `address` (created in the same batch if new):
    /// `Routed` there, then `Acked` here, so the message is never
    /// unreferenced in between.
    pub(crate) fn move_refs(
        &mut self,
        address: &str,
        keys: &[RefKey],
    ) -> (Vec<Entry>, Vec<(RefKey, Id)>) {
        if keys.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let (dlq, create) =
            self.broker
                .plan_queue(address, address, QueueKind::Anycast, &mut self.ids);
        let mut entries: Vec<Entry> = create
            .into_iter()
            .map(|d| Entry::Put(Record::QueueCreated(d)))
            .collect();
        let mut moves = Vec::new();
        for k in keys {
            if k.durable {
                entries.push(Entry::Put(Record::Routed {
                    id: k.message,
                    queue: dlq,
                }));
                entries.push(Entry::Put(Record::Acked {
                    id: k.message,
                    queue: k.queue,
                }));
            } else {
                moves.push((*k, dlq));
            }
        }
        (entries, moves)
    }
}
