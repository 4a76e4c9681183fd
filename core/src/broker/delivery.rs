//! Delivery and flow control: handing ready messages to consumers with
//! credit, round robin, within connection and consumer windows.

use super::queue::{AckMode, RefState};
use super::state::{settle_entries_into, Broker};
use super::types::{Delivery, RefKey};
use crate::ids::ConnId;

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

    /// Hands ready messages to consumers with credit, round robin. `send`
    /// turns each delivery into bytes for its connection and returns how many.
    pub fn dispatch(&mut self, send: &mut dyn FnMut(Delivery) -> usize) {
        let out_max = self.config.connection_outbound_bytes_max;
        while let Some(qid) = self.dirty.pop_first() {
            while let Some(q) = self.queues.get_mut(&qid) {
                let Some((&pos, &mid)) = q.ready.first_key_value() else {
                    break;
                };
                // Find the next consumer, round robin, that has credit.
                let mut chosen = None;
                for _ in 0..q.consumers.len() {
                    let Some(cid) = q.consumers.pop_front() else {
                        break;
                    };
                    q.consumers.push_back(cid);
                    let Some(c) = self.consumers.get(&cid) else {
                        continue;
                    };
                    let conn_ok = self
                        .conns
                        .get(&c.conn)
                        .is_some_and(|f| f.unflushed_bytes < out_max);
                    let window_ok = match c.window_bytes {
                        None => true,
                        Some(w) => c.unacked.is_empty() || c.unacked_bytes < w,
                    };
                    if conn_ok && window_ok {
                        chosen = Some(cid);
                        break;
                    }
                }
                let Some(cid) = chosen else {
                    break;
                };
                q.ready.remove(&pos);
                let Some(m) = self.messages.get(&mid) else {
                    q.refs.remove(&mid);
                    continue;
                };
                let Some(c) = self.consumers.get_mut(&cid) else {
                    break;
                };
                let Some(flow) = self.conns.get_mut(&c.conn) else {
                    break;
                };
                let Some(r) = q.refs.get_mut(&mid) else {
                    continue;
                };
                r.deliveries += 1;
                let size = m.body.size_bytes();
                let mut auto_settle_entries = Vec::new();
                let (ack, auto_settled) = if c.ack_mode == AckMode::Auto {
                    r.state = RefState::Settling;
                    let key = RefKey {
                        message: mid,
                        queue: qid,
                        durable: r.durable,
                    };
                    settle_entries_into(Some(m), &key, &mut auto_settle_entries);
                    (None, Some(key))
                } else {
                    let seq = flow.next_ack;
                    flow.next_ack += 1;
                    flow.acks.insert(seq, cid);
                    c.unacked.insert(seq, (mid, size));
                    c.unacked_bytes += size;
                    r.state = RefState::Delivered {
                        consumer: cid,
                        ack_seq: seq,
                    };
                    (Some(seq), None)
                };
                let delivery = Delivery {
                    conn: c.conn,
                    sub_id: c.sub_id.clone(),
                    ack,
                    message_id: mid,
                    queue: qid,
                    message: m.body.clone(),
                    deliveries: r.deliveries,
                    destination: c.destination.clone(),
                    original_address: (m.body.address != q.address).then(|| m.body.address.clone()),
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
    }
}
