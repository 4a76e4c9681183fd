//! Queue browsers (JMS `QueueBrowser`, an AMQP source with distribution
//! mode `copy`): a consumer that sees each message of its queue once, in
//! order, without taking it. Nothing it receives changes the queue; it
//! only needs credit (or room) and a filter that accepts.

use std::ops::Bound;

use super::state::Broker;
use super::types::Delivery;
use crate::ids::Id;

impl Broker {
    /// Hands each browser of queue `qid` the messages past its place.
    pub(crate) fn dispatch_browsers(&mut self, qid: Id, send: &mut dyn FnMut(Delivery) -> usize) {
        let out_max = self.config.connection_outbound_bytes_max;
        let Some(q) = self.queues.get(&qid) else {
            return;
        };
        let browsers: Vec<_> = q
            .consumers
            .iter()
            .copied()
            .filter(|cid| self.consumers.get(cid).is_some_and(|c| c.browse))
            .collect();
        for cid in browsers {
            loop {
                let Some(q) = self.queues.get(&qid) else {
                    return;
                };
                let Some(c) = self.consumers.get(&cid) else {
                    break;
                };
                if !c.has_room(&self.conns, out_max) {
                    break;
                }
                let after = c.browsed_to;
                let next = q
                    .refs
                    .range_from(after.as_ref().map_or(Bound::Unbounded, Bound::Excluded))
                    .map(|(mid, _)| *mid)
                    .find(|mid| {
                        // A paged message stops the scan: it is read back
                        // first (browsers see messages in order too).
                        self.messages.get(mid).is_some_and(|m| {
                            m.paged || c.filter.accepts(c.conn, &m.body, m.origin, 1)
                        })
                    });
                let Some(mid) = next else {
                    // Nothing more to see: remember where the scan ended.
                    let last = q.refs.last_key_value().map(|(k, _)| *k);
                    if let Some(c) = self.consumers.get_mut(&cid) {
                        c.browsed_to = last.max(c.browsed_to);
                    }
                    break;
                };
                let Some(m) = self.messages.get(&mid) else {
                    break;
                };
                if m.paged {
                    self.want_page_in(qid, mid, None);
                    break;
                }
                let delivery = Delivery {
                    conn: c.conn,
                    sub_id: c.sub_id.clone(),
                    ack: None,
                    message_id: mid,
                    queue: qid,
                    message: m.body.clone(),
                    deliveries: 1,
                    destination: c.destination.clone(),
                    original_address: (m.body.address != q.address).then(|| m.body.address.clone()),
                    expired: false,
                    auto_settled: None,
                    auto_settle_entries: Vec::new(),
                };
                let conn = c.conn;
                if let Some(c) = self.consumers.get_mut(&cid) {
                    c.browsed_to = Some(mid);
                    if let Some(credit) = c.credit.as_mut() {
                        *credit = credit.saturating_sub(1);
                    }
                }
                let bytes = send(delivery);
                if let Some(f) = self.conns.get_mut(&conn) {
                    f.unflushed_bytes += bytes;
                }
            }
        }
    }
}
