//! Settling deliveries: acknowledgements, requeues for redelivery and
//! moves to the dead-letter queue.

use super::errors::AckError;
use super::queue::{AckMode, RefState};
use super::state::Broker;
use super::types::RefKey;
use crate::ids::{ConnId, Id};

/// How references left their queue, for [`Broker::count_settled`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Acknowledged,
    DeadLettered,
    Expired,
}

impl Broker {
    /// Takes delivered messages out of a consumer's hands for an ACK or NACK
    /// (cumulative in `client` mode). They are `Settling` until the caller
    /// finishes them with a journaled ack, [`Broker::drop_volatile`] or
    /// [`Broker::requeue`].
    pub fn settle(&mut self, conn: ConnId, seq: u64) -> Result<Vec<RefKey>, AckError> {
        let unknown = || AckError::UnknownAckId(seq.to_string());
        let flow = self.conns.get_mut(&conn).ok_or_else(unknown)?;
        let cid = *flow.acks.get(&seq).ok_or_else(unknown)?;
        let c = self.consumers.get_mut(&cid).ok_or_else(unknown)?;
        let seqs: Vec<u64> = match c.ack_mode {
            AckMode::Auto => return Err(AckError::AutoAck(seq.to_string())),
            AckMode::Client => c
                .unacked
                .keys()
                .copied()
                .take_while(|s| *s <= seq)
                .collect(),
            AckMode::ClientIndividual => vec![seq],
        };
        let mut keys = Vec::with_capacity(seqs.len());
        for s in seqs {
            if let Some((mid, size)) = c.unacked.remove(&s) {
                c.unacked_bytes = c.unacked_bytes.saturating_sub(size);
                flow.acks.remove(&s);
                if let Some(q) = self.queues.get_mut(&c.queue) {
                    if let Some(r) = q.refs.get_mut(&mid) {
                        r.state = RefState::Settling;
                        keys.push(RefKey {
                            message: mid,
                            queue: c.queue,
                            durable: r.durable,
                        });
                    }
                }
            }
        }
        self.dirty.insert(c.queue);
        Ok(keys)
    }

    /// The ack id of a message delivered on `conn` (STOMP 1.0/1.1 clients ack
    /// by `message-id`), optionally limited to one subscription.
    pub fn ack_for_message(&self, conn: ConnId, sub_id: Option<&str>, message: Id) -> Option<u64> {
        let flow = self.conns.get(&conn)?;
        flow.subs
            .iter()
            .filter(|(s, _)| sub_id.is_none_or(|want| want == s.as_str()))
            .filter_map(|(_, cid)| self.consumers.get(cid))
            .find_map(|c| {
                c.unacked
                    .iter()
                    .find(|(_, (m, _))| *m == message)
                    .map(|(seq, _)| *seq)
            })
    }

    /// Counts settlements on their queues' counters.
    pub fn count_settled(&mut self, keys: &[RefKey], how: Settled) {
        for k in keys {
            if let Some(q) = self.queues.get_mut(&k.queue) {
                let c = &mut q.counters;
                match how {
                    Settled::Acknowledged => c.acknowledged += 1,
                    Settled::DeadLettered => c.dead_lettered += 1,
                    Settled::Expired => c.expired += 1,
                }
            }
        }
    }

    /// Finishes the ack of a reference that is not journaled.
    pub fn drop_volatile(&mut self, key: RefKey) {
        debug_assert!(!key.durable, "durable refs are removed by an Acked record");
        self.drop_ref(key.message, key.queue);
    }

    /// Puts settling references back in line for redelivery. Those that were
    /// delivered `delivery_attempts_max` times are left settling and returned:
    /// the caller moves them to the dead-letter address.
    pub fn requeue(&mut self, keys: &[RefKey]) -> Vec<RefKey> {
        let max = self.config.delivery_attempts_max;
        let dla = self.config.dead_letter_address.clone();
        let mut dead = Vec::new();
        for key in keys {
            let Some(q) = self.queues.get_mut(&key.queue) else {
                continue;
            };
            let Some(r) = q.refs.get(&key.message) else {
                continue;
            };
            if max > 0 && r.deliveries >= max && q.address != dla {
                dead.push(*key);
            } else {
                q.make_ready(key.message);
                self.dirty.insert(key.queue);
            }
        }
        dead
    }

    /// Puts settling references back in line without counting their
    /// delivery (AMQP `released`: the client never processed them).
    pub fn release(&mut self, keys: &[RefKey]) {
        for key in keys {
            let Some(q) = self.queues.get_mut(&key.queue) else {
                continue;
            };
            if let Some(r) = q.refs.get_mut(&key.message) {
                r.deliveries = r.deliveries.saturating_sub(1);
                q.make_ready(key.message);
                self.dirty.insert(key.queue);
            }
        }
    }

    /// Moves a settling non-journaled reference to another queue in memory.
    pub fn move_volatile(&mut self, key: RefKey, to: Id) {
        // The new reference first: dropping the old one first would forget
        // a message that had no other reference.
        self.add_ref(key.message, to, false);
        self.drop_ref(key.message, key.queue);
    }
}
