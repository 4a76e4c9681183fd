//! The Kafka bridge in the node: a send to a bridged address takes its
//! Kafka record into the journal batch that stores it; records read from
//! Kafka become messages journaled in one batch with the position they
//! reach; the reader is started, told what to read and stopped with the
//! live role.

use std::sync::Arc;

use super::admission::Gate;
use super::config::PlantedBug;
use super::node::Node;
use super::ops::OpError;
use super::ports::Output;
use super::work::{Effects, Work};
use crate::bridge::records::{to_message, to_record};
use crate::bridge::{BridgeEvent, BridgeRequest, InRecord, OutError, OutRecord, Position};
use crate::ha::HaState;
use crate::ids::Id;
use crate::journal::{Entry, Key, Record};
use crate::message::{Message, Routing};

impl Node {
    /// The record a send becomes on its way to Kafka, if its address is
    /// bridged out. `plan_send_inner` puts it in the batch's Kafka
    /// transaction (Kafka journal) or in the outbox (local journal).
    pub(crate) fn plan_publish(&self, message: &Message) -> Result<Option<OutRecord>, OpError> {
        let Some(cfg) = self.config.bridge.as_ref() else {
            return Ok(None);
        };
        let Some(to) = cfg.outbound(&message.address) else {
            return Ok(None);
        };
        match to_record(message, &to, &cfg.cluster) {
            Ok(r) => Ok(Some(r)),
            Err(OutError::StructuredBody) => Err(OpError::NotBridgeable(message.address.clone())),
        }
    }

    /// A bridged address is a topic (multicast) whatever the sender said.
    pub(crate) fn bridged_routing(&self, address: &str) -> Option<Routing> {
        let cfg = self.config.bridge.as_ref()?;
        cfg.is_bridged(address).then_some(Routing::Multicast)
    }

    pub(crate) fn on_bridge(&mut self, ev: BridgeEvent) {
        match ev {
            BridgeEvent::Records {
                topic,
                partition,
                records,
            } => self.ingest(topic, partition, records),
            BridgeEvent::Forwarded { ids } => {
                // Not live: the next live forwards them again from the outbox.
                if self.state != HaState::Live {
                    return;
                }
                for id in ids {
                    if self.broker.outbox().contains_key(&id) {
                        self.counters.bridge_forwarded += 1;
                        self.housekeeping.push(Entry::Tombstone(Key::Outbox(id)));
                    }
                }
            }
        }
    }

    /// Hands outbox records to the forwarder.
    pub(crate) fn forward(&mut self, records: Vec<(Id, Arc<OutRecord>)>, again: bool) {
        if self.state == HaState::Live && self.bridge_reported.is_some() {
            self.outputs
                .push_back(Output::Bridge(BridgeRequest::Forward { records, again }));
        }
    }

    /// Records of one partition become messages, journaled in one batch
    /// with the position they reach. Records already planned (a reader
    /// that sent them twice) are skipped, so each offset is ingested once.
    fn ingest(&mut self, topic: String, partition: u32, records: Vec<InRecord>) {
        // A reader that has not heard `Stop` yet: nothing may be written.
        if self.state != HaState::Live {
            return;
        }
        let Some(cfg) = self.config.bridge.clone() else {
            return;
        };
        let key = (topic.clone(), partition);
        let start = self.bridge_next.get(&key).copied().unwrap_or_else(|| {
            self.broker
                .bridge_positions()
                .get(&key)
                .copied()
                .unwrap_or(0)
        });
        let mut next = start;
        let mut entries = Vec::new();
        let mut effects = Effects::default();
        let from = cfg.inbound(&topic);
        // Producers are held back (the disk is full): so is Kafka's; the
        // reader comes back to `start` when told where this batch ended.
        let take = if self.admission.gate(&self.config) == Gate::Open {
            crate::bridge::RECORDS_PER_BATCH_MAX
        } else {
            tracing::debug!(%topic, partition, "bridge ingestion held back: the disk is full");
            0
        };
        for r in records.iter().take(take) {
            assert!(
                r.offset >= next || r.offset < start,
                "bridge reader sent offsets out of order: {} after {next}",
                r.offset
            );
            if r.offset < start {
                continue;
            }
            // A gap (compacted or deleted records) is skipped over.
            next = r.offset;
            let Some(from) = from.as_ref() else {
                next += 1;
                continue;
            };
            if r.written_by(&cfg.cluster) {
                // Our own bridge wrote it: reading it back would loop.
                self.counters.bridge_loop_skipped += 1;
                next += 1;
                continue;
            }
            let message = to_message(r, partition, from);
            if let Err(e) = self.plan_send_inner(message, None, false, &mut entries, &mut effects) {
                // The broker is full: stop here; the reader resumes at
                // `next` when told where the batch ended.
                tracing::warn!(%topic, partition, offset = r.offset, error = %e, "bridge ingestion paused");
                break;
            }
            next += 1;
        }
        if next > start {
            if self.bug(PlantedBug::BridgePositionAhead) {
                next += 1;
            }
            entries.push(Entry::Put(Record::BridgePosition {
                topic: topic.clone(),
                partition,
                next_offset: next,
            }));
            self.bridge_next.insert(key, next);
        }
        self.counters.bridge_records_in += next - start;
        let position = Position {
            topic,
            partition,
            next_offset: next,
        };
        self.submit(
            entries,
            Work::Ingest {
                position: Box::new(position),
                effects,
            },
        );
    }

    /// An ingested batch is durable: tell the reader where it ended.
    pub(crate) fn ingested(&mut self, position: Position) {
        if self.state == HaState::Live {
            self.outputs
                .push_back(Output::Bridge(BridgeRequest::Ingested(position)));
        }
    }

    /// The live role began: start the reader at the journaled positions.
    pub(crate) fn bridge_start(&mut self) {
        if self.config.bridge.is_none() {
            return;
        }
        self.bridge_next.clear();
        let positions = self
            .broker
            .bridge_positions()
            .iter()
            .map(|((topic, partition), next)| Position {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        let subscribed = self.subscribed_bridged();
        self.bridge_reported = Some((self.broker.queues_generation(), subscribed.clone()));
        self.outputs.push_back(Output::Bridge(BridgeRequest::Start {
            positions,
            subscribed,
        }));
        // What an earlier live left in the outbox goes out again.
        let pending: Vec<(Id, Arc<OutRecord>)> = self
            .broker
            .outbox()
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        if !pending.is_empty() {
            self.forward(pending, true);
        }
    }

    /// The live role ended: stop the reader.
    pub(crate) fn bridge_stop(&mut self) {
        if self.config.bridge.is_some() && self.bridge_reported.take().is_some() {
            self.bridge_next.clear();
            self.outputs.push_back(Output::Bridge(BridgeRequest::Stop));
        }
    }

    /// After every input while live: tell the reader when the bridged
    /// addresses with subscriptions changed (looked at only when some
    /// queue was created or deleted).
    pub(crate) fn bridge_note_subscriptions(&mut self) {
        let generation = self.broker.queues_generation();
        let Some((seen, last)) = self.bridge_reported.as_ref() else {
            return;
        };
        if *seen == generation {
            return;
        }
        let now = self.subscribed_bridged();
        let changed = *last != now;
        self.bridge_reported = Some((generation, now.clone()));
        if changed {
            self.outputs
                .push_back(Output::Bridge(BridgeRequest::Subscribed { addresses: now }));
        }
    }

    fn subscribed_bridged(&self) -> Vec<String> {
        let Some(cfg) = self.config.bridge.as_ref() else {
            return Vec::new();
        };
        self.broker
            .addresses_with_subscriptions()
            .filter(|a| cfg.is_bridged(a))
            .map(str::to_string)
            .collect()
    }
}
