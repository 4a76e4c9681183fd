//! Delivery and flow control: handing ready messages to consumers with
//! credit, round robin, within connection and consumer windows, skipping
//! what a consumer's filter refuses and moving aside what has expired.

use std::collections::{BTreeMap, VecDeque};

use super::queue::{AckMode, ConsumerId, ReadyKey, RefState};
use super::state::{settle_entries_into, Broker, ConnFlow, Consumer, Msg};
use super::types::{Delivery, RefKey};
use crate::ids::{ConnId, Id};
use crate::Millis;

/// Who takes the message at the head of the scan.
enum Choice {
    Consumer(ConsumerId),
    /// Some consumer has room, but every such consumer's filter refuses it.
    Refused,
    /// No consumer has room: nothing more leaves this queue for now.
    NoRoom,
}

impl Consumer {
    /// Whether the consumer may be handed one more message (its
    /// connection's outbound bytes, its byte and message windows).
    pub(crate) fn has_room(&self, conns: &BTreeMap<ConnId, ConnFlow>, out_max: usize) -> bool {
        let conn_ok = conns
            .get(&self.conn)
            .is_some_and(|f| f.unflushed_bytes < out_max);
        // A window of 0 still lets one message through at a time.
        let bytes_ok = self
            .window_bytes
            .is_none_or(|w| self.unacked.is_empty() || self.unacked_bytes < w);
        let messages_ok = self
            .window_messages
            .is_none_or(|w| self.unacked.is_empty() || self.unacked.len() < w);
        // AMQP link credit: a delivery only within what the client granted.
        let credit_ok = self.credit != Some(0);
        conn_ok && bytes_ok && messages_ok && credit_ok
    }
}

/// Picks the next consumer, round robin, that has room and whose filter
/// takes `m` as delivery number `delivery_count`.
fn choose(
    rotation: &mut VecDeque<ConsumerId>,
    consumers: &BTreeMap<ConsumerId, Consumer>,
    conns: &BTreeMap<ConnId, ConnFlow>,
    out_max: usize,
    m: &Msg,
    delivery_count: u32,
) -> Choice {
    let mut room = false;
    for _ in 0..rotation.len() {
        let Some(cid) = rotation.pop_front() else {
            break;
        };
        rotation.push_back(cid);
        let Some(c) = consumers.get(&cid) else {
            continue;
        };
        // Browsers take nothing (see `browse.rs`).
        if c.browse || !c.has_room(conns, out_max) {
            continue;
        }
        room = true;
        if c.filter.accepts(c.conn, &m.body, m.origin, delivery_count) {
            return Choice::Consumer(cid);
        }
    }
    if room {
        Choice::Refused
    } else {
        Choice::NoRoom
    }
}

impl Broker {
    /// Records bytes queued for a connection (every frame counts).
    pub fn charge(&mut self, conn: ConnId, bytes: usize) {
        if let Some(f) = self.conns.get_mut(&conn) {
            f.unflushed_bytes += bytes;
        }
    }

    /// The driver wrote `bytes` to the connection; deliveries may resume.
    pub fn flushed(&mut self, conn: ConnId, bytes: usize) {
        let max = self.config.connection_outbound_bytes_max;
        let Some(f) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_full = f.unflushed_bytes >= max;
        f.unflushed_bytes = f.unflushed_bytes.saturating_sub(bytes);
        if was_full && f.unflushed_bytes < max {
            for cid in f.subs.values() {
                if let Some(c) = self.consumers.get(cid) {
                    self.dirty.insert(c.queue);
                }
            }
        }
    }

    /// Hands ready messages to consumers with room, round robin. `send`
    /// turns each delivery into bytes for its connection and returns how
    /// many. A message whose expiry time has come (`now`) is not delivered:
    /// it is taken out of line for [`Broker::take_expired`].
    pub fn dispatch(&mut self, now: Millis, send: &mut dyn FnMut(Delivery) -> usize) {
        while let Some(qid) = self.dirty.pop_first() {
            self.dispatch_queue(qid, now, send);
        }
        self.finish_drains();
    }

    /// Consumers asked to drain that can get nothing more now: their
    /// remaining credit is used up (AMQP: the sender advances its
    /// delivery-count and answers the flow).
    fn finish_drains(&mut self) {
        let draining = std::mem::take(&mut self.draining);
        for cid in draining {
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            // Its queue stopped at a paged message being read back: the
            // queue is not empty, so the drain waits for the read (a JMS
            // receiveNoWait must not see "nothing" meanwhile).
            let queue = c.queue;
            if self.page_wanted.contains_key(&queue)
                || self.page_waiting.contains(&queue)
                || self.page_reading.values().any(|(q, _)| *q == queue)
            {
                self.draining.insert(cid);
                continue;
            }
            c.credit = Some(0);
            c.drain = false;
            self.drained.push((c.conn, c.sub_id.clone()));
        }
    }

    fn dispatch_queue(&mut self, qid: Id, now: Millis, send: &mut dyn FnMut(Delivery) -> usize) {
        self.dispatch_browsers(qid, send);
        let out_max = self.config.connection_outbound_bytes_max;
        let expired_max = self.config.expiry_batch_max;
        let skip_max = self.config.dispatch_skip_max;
        // Where the scan stands: messages before it were looked past
        // (refused by every consumer with room, or expired beyond the batch).
        let mut cursor: Option<ReadyKey> = None;
        let mut skipped = 0usize;
        while let Some(q) = self.queues.get_mut(&qid) {
            if q.consumers.is_empty() {
                return;
            }
            let Some((key, mid)) = q.next_ready(cursor) else {
                return;
            };
            let Some(m) = self.messages.get(&mid) else {
                // Unreachable while the invariants hold; never loop on it.
                q.remove(mid);
                continue;
            };
            let Some(r) = q.refs.get(&mid) else {
                return;
            };
            // In order: nothing behind a paged message leaves before it.
            // Expired ones still go (the stand-in has the times).
            if m.paged && r.expires_at.is_none_or(|t| now < t) {
                self.want_page_in(qid, mid, Some(key));
                #[cfg(feature = "planted-bugs")]
                if self.config.planted_paging_out_of_order {
                    cursor = Some(key);
                    continue;
                }
                return;
            }
            if r.expires_at.is_some_and(|t| now >= t) {
                if self.expired.len() < expired_max {
                    let durable = r.durable;
                    q.unready(mid, RefState::Settling);
                    self.expired.push(RefKey {
                        message: mid,
                        queue: qid,
                        durable,
                    });
                    continue;
                }
                // The expiry scan moves the rest soon.
                self.expiry_backlog = true;
                cursor = Some(key);
                skipped += 1;
                if skipped >= skip_max {
                    return;
                }
                continue;
            }
            let cid = match choose(
                &mut q.consumers,
                &self.consumers,
                &self.conns,
                out_max,
                m,
                r.deliveries + 1,
            ) {
                Choice::Consumer(cid) => cid,
                Choice::NoRoom => return,
                Choice::Refused => {
                    cursor = Some(key);
                    skipped += 1;
                    if skipped >= skip_max {
                        return;
                    }
                    continue;
                }
            };
            let Some(c) = self.consumers.get_mut(&cid) else {
                return;
            };
            let Some(flow) = self.conns.get_mut(&c.conn) else {
                return;
            };
            let size = m.body.size_bytes();
            let original_address = (m.body.address != q.address).then(|| m.body.address.clone());
            let expired = original_address.is_some() && q.address == self.config.expiry_address;
            let auto = c.ack_mode == AckMode::Auto;
            let state = if auto {
                RefState::Settling
            } else {
                RefState::Delivered {
                    consumer: cid,
                    ack_seq: flow.next_ack,
                }
            };
            let Some(r) = q.unready(mid, state) else {
                return;
            };
            r.deliveries += 1;
            let deliveries = r.deliveries;
            let durable = r.durable;
            q.counters.delivered += 1;
            if deliveries > 1 {
                q.counters.redelivered += 1;
            }
            if auto {
                q.counters.acknowledged += 1;
            }
            if let Some(credit) = c.credit.as_mut() {
                *credit -= 1;
            }
            let mut auto_settle_entries = Vec::new();
            let (ack, auto_settled) = if auto {
                let key = RefKey {
                    message: mid,
                    queue: qid,
                    durable,
                };
                settle_entries_into(Some(m), &key, &mut auto_settle_entries);
                (None, Some(key))
            } else {
                let seq = flow.next_ack;
                flow.next_ack += 1;
                flow.acks.insert(seq, cid);
                c.unacked.insert(seq, (mid, size));
                c.unacked_bytes += size;
                (Some(seq), None)
            };
            let delivery = Delivery {
                conn: c.conn,
                sub_id: c.sub_id.clone(),
                ack,
                message_id: mid,
                queue: qid,
                message: m.body.clone(),
                deliveries,
                destination: c.destination.clone(),
                expired,
                original_address,
                auto_settled,
                auto_settle_entries,
            };
            let conn = c.conn;
            let bytes = send(delivery);
            if let Some(f) = self.conns.get_mut(&conn) {
                f.unflushed_bytes += bytes;
            }
        }
    }

    /// References found expired since the last call (settling: the node
    /// moves them to the expiry address).
    pub fn take_expired(&mut self) -> Vec<RefKey> {
        std::mem::take(&mut self.expired)
    }
}
