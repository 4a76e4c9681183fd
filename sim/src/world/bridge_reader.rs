//! A node's Kafka bridge reader, as `halyard-io`'s reader does it: while
//! the node is live, `read_committed` fetches of every bridged topic whose
//! address has subscriptions, from the journaled position (or the start),
//! one batch per topic handed to the node at a time; the next only after
//! the node answered `Ingested` with where it stopped. Answers with
//! `Effect`s. (The simulated topics have one partition.)

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::bridge::{BridgeConfig, BridgeEvent, BridgeRequest, InRecord};
use halyard_core::node::Input;

use super::effects::Effect;
use super::kafka_requests::{KafkaRequest, RequestKind};
use crate::bridge_wire;
use crate::kafka::FetchResult;

#[derive(Default)]
struct TopicRead {
    /// Offset of the next fetch.
    next: u64,
    /// A batch is with the node.
    handed: bool,
}

#[derive(Default)]
pub(super) struct BridgeReader {
    live: bool,
    positions: BTreeMap<String, u64>,
    subscribed: BTreeSet<String>,
    topics: BTreeMap<String, TopicRead>,
    /// The topic whose fetch is in flight (one at a time).
    fetching: Option<String>,
    /// Where the next fetch looks first (round robin).
    turn: usize,
}

impl BridgeReader {
    /// The node crashed or restarted.
    pub(super) fn reset(&mut self) {
        *self = BridgeReader::default();
    }

    pub(super) fn request(&mut self, r: BridgeRequest, cfg: &BridgeConfig, out: &mut Vec<Effect>) {
        match r {
            BridgeRequest::Start {
                positions,
                subscribed,
            } => {
                *self = BridgeReader::default();
                self.live = true;
                self.positions = positions
                    .into_iter()
                    .map(|p| (p.topic, p.next_offset))
                    .collect();
                self.subscribed = subscribed.into_iter().collect();
            }
            BridgeRequest::Subscribed { addresses } => {
                self.subscribed = addresses.into_iter().collect();
            }
            BridgeRequest::Ingested(p) => {
                if let Some(t) = self.topics.get_mut(&p.topic) {
                    t.handed = false;
                    t.next = p.next_offset;
                }
            }
            BridgeRequest::Stop => self.reset(),
            BridgeRequest::Forward { .. } => {
                unreachable!("simulated nodes journal in Kafka: the bridge has no outbox")
            }
        }
        self.poll(cfg, out);
    }

    /// Starts the next fetch, if one is due.
    pub(super) fn poll(&mut self, cfg: &BridgeConfig, out: &mut Vec<Effect>) {
        if !self.live || self.fetching.is_some() {
            return;
        }
        let wanted: BTreeSet<String> = self
            .subscribed
            .iter()
            .filter_map(|a| cfg.topic_of(a))
            .filter(|m| cfg.inbound(&m.topic).is_some())
            .map(|m| m.topic)
            .collect();
        self.topics.retain(|t, _| wanted.contains(t));
        for t in &wanted {
            let next = self.positions.get(t).copied().unwrap_or(0);
            self.topics.entry(t.clone()).or_insert(TopicRead {
                next,
                handed: false,
            });
        }
        let idle: Vec<&String> = self
            .topics
            .iter()
            .filter(|(_, r)| !r.handed)
            .map(|(t, _)| t)
            .collect();
        if idle.is_empty() {
            return;
        }
        self.turn = self.turn.wrapping_add(1);
        let topic = idle[self.turn % idle.len()].clone();
        let offset = self.topics[&topic].next;
        self.fetching = Some(topic.clone());
        out.push(Effect::Request(
            RequestKind::BridgeFetch,
            KafkaRequest::FetchTopic { topic, offset },
        ));
    }

    pub(super) fn on_fetched(
        &mut self,
        topic: String,
        result: FetchResult,
        cfg: &BridgeConfig,
        out: &mut Vec<Effect>,
    ) {
        if self.fetching.as_deref() != Some(topic.as_str()) {
            return;
        }
        self.fetching = None;
        let Some(t) = self.topics.get_mut(&topic) else {
            return self.poll(cfg, out);
        };
        if result.records.is_empty() {
            // Past markers and aborted data; nothing new yet: look again later.
            t.next = t.next.max(result.next_offset);
            out.push(Effect::ArmBridgePoll);
            return;
        }
        t.handed = true;
        let records = result
            .records
            .into_iter()
            .map(|r| {
                let value = r.value.unwrap_or_default();
                let (headers, value) = bridge_wire::decode(&value).unwrap_or((Vec::new(), value));
                InRecord {
                    offset: r.offset,
                    key: (!r.key.is_empty()).then_some(r.key),
                    value: Some(value),
                    headers,
                    timestamp_ms: None,
                }
            })
            .collect();
        out.push(Effect::Input(Input::Bridge(BridgeEvent::Records {
            topic,
            partition: 0,
            records,
        })));
        self.poll(cfg, out);
    }

    /// The fetch in flight got no answer.
    pub(super) fn on_timeout(&mut self, cfg: &BridgeConfig, out: &mut Vec<Effect>) {
        self.fetching = None;
        self.poll(cfg, out);
    }
}
