//! [`Node::stats`]: the node's figures copied into a [`NodeStats`], and
//! the counting of events (the types are in `stats.rs`).

use super::conn::Session;
use super::events::Event;
use super::node::Node;
use super::stats::{AddressStats, ConnectionCounts, ConnectionStats, NodeStats, QueueStats};
use crate::broker::QueueCounters;
use crate::ha::HaState;

impl Node {
    /// A snapshot for metrics and management. At most `max_queues` queues
    /// are listed, those with the most messages first (a bound on the
    /// series a scrape returns).
    pub fn stats(&self, max_queues: usize) -> NodeStats {
        let mut connections = ConnectionCounts::default();
        for c in self.conns.values() {
            match &c.session {
                Some(Session::Stomp(_)) => connections.stomp += 1,
                Some(Session::Amqp(_)) => connections.amqp += 1,
                None => connections.unknown += 1,
            }
        }
        let mut queues: Vec<QueueStats> = self
            .broker
            .queues()
            .map(|q| QueueStats {
                name: q.name.clone(),
                address: q.address.clone(),
                routing: q.routing,
                durable: q.durable(),
                messages: q.depth() as u64,
                consumers: q.consumer_count() as u64,
                counters: q.counters,
            })
            .collect();
        let queues_total = queues.len() as u64;
        let mut totals = QueueCounters::default();
        for q in &queues {
            let (t, c) = (&mut totals, &q.counters);
            t.added += c.added;
            t.delivered += c.delivered;
            t.redelivered += c.redelivered;
            t.acknowledged += c.acknowledged;
            t.dead_lettered += c.dead_lettered;
            t.expired += c.expired;
        }
        let mut by_address: std::collections::BTreeMap<&str, AddressStats> = Default::default();
        for q in &queues {
            let a = by_address
                .entry(q.address.as_str())
                .or_insert_with(|| AddressStats {
                    name: q.address.clone(),
                    routing: self.broker.address_routing(&q.address).unwrap_or(q.routing),
                    queues: 0,
                    messages: 0,
                    consumers: 0,
                });
            a.queues += 1;
            a.messages += q.messages;
            a.consumers += q.consumers;
        }
        // Addresses declared with no queue (a topic nobody subscribes to).
        for (name, a) in &self.broker.addresses {
            if let Some(routing) = a.declared {
                by_address
                    .entry(name.as_str())
                    .or_insert_with(|| AddressStats {
                        name: name.clone(),
                        routing,
                        queues: 0,
                        messages: 0,
                        consumers: 0,
                    });
            }
        }
        let mut addresses: Vec<AddressStats> = by_address.into_values().collect();
        addresses.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.name.cmp(&b.name)));
        addresses.truncate(max_queues);
        queues.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.name.cmp(&b.name)));
        queues.truncate(max_queues);
        let connection_list = self
            .conns
            .iter()
            .take(max_queues)
            .map(|(id, c)| {
                let flow = self.broker.conns.get(id);
                ConnectionStats {
                    id: id.0,
                    protocol: match &c.session {
                        Some(Session::Stomp(_)) => "stomp",
                        Some(Session::Amqp(_)) => "amqp",
                        None => "unknown",
                    },
                    opened_at_ms: c.opened_at,
                    consumers: flow.map_or(0, |f| f.subs.len() as u64),
                    unacknowledged: flow.map_or(0, |f| f.acks.len() as u64),
                    in_flight: c.inflight as u64,
                    transactions: c.txs.len() as u64,
                    paused: c.paused,
                    remote: None,
                }
            })
            .collect();
        NodeStats {
            node_id: self.config.node_id.clone(),
            state: self.state.name(),
            epoch: self.epoch,
            accepting: self.accepting && self.state == HaState::Live,
            fenced_by: self.fenced_by,
            connections,
            queues,
            queues_total,
            messages: self.broker.message_count() as u64,
            totals,
            addresses,
            connection_list,
            counters: self.counters.clone(),
            disk: self.admission.disk,
            producers_stopped: self.admission.full().map(str::to_owned),
            memory_bytes: self.broker.bytes_held(),
            paged_messages: self.broker.paged_messages() as u64,
        }
    }

    /// Counts what an event says happened.
    pub(crate) fn count_event(&mut self, e: &Event) {
        let c = &mut self.counters;
        match e {
            Event::LiveLockObtained => c.lock_obtained += 1,
            Event::LockLost { .. } => c.lock_lost += 1,
            Event::Live { .. } => {
                c.activations += 1;
                self.fenced_by = None;
            }
            Event::Fenced { by_epoch, .. } | Event::FencedAfterStepDown { by_epoch, .. } => {
                c.fenced += 1;
                self.fenced_by = Some(by_epoch.unwrap_or(self.epoch + 1));
            }
            Event::JournalFailed { .. } => c.journal_failures += 1,
            Event::ClientError { .. } => c.client_errors += 1,
            Event::DiskFull { .. } => c.disk_full += 1,
            Event::MemoryFull { .. } => c.memory_full += 1,
            _ => {}
        }
    }
}
