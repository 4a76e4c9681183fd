//! The Kafka bridge's rules, checked after the run:
//!
//! - Out: every acknowledged send to a bridged address is in its Kafka
//!   topic exactly once among committed records (`read_committed`). A copy
//!   committed twice is a violation for a producer with duplicate ids (its
//!   resends must be recognised), and for any other producer unless it
//!   resent that message. A fenced live's records are aborted with its
//!   journal writes, so they are not among the committed ones.
//! - In: every record the outside producer committed to the fed topic
//!   reaches every durable subscription of its address, and is stored there
//!   once: copies with two broker message ids (STOMP shows them) mean the
//!   record was ingested twice.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::bridge_wire;
use crate::client::{Client, Kind, ORIGIN, PRODUCER, SEQ};
use crate::kafka::Fetched;

/// The bridged address the topic producers send to, and its topic.
pub const OUT_DESTINATION: &str = "/topic/kafka.events";
pub const OUT_TOPIC: &str = "events";
/// The topic the outside producer writes, the address it is bridged to,
/// and the producer's name in the records' headers.
pub const FEED_TOPIC: &str = "feed";
pub const FEED_DESTINATION: &str = "/topic/kafka.feed";
pub const FEED_PRODUCER: &str = "kafka-feed";

/// What broke a bridge rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeViolations {
    /// Acknowledged, but not among the topic's committed records: (producer, seq).
    pub out_lost: Vec<(String, u64)>,
    /// Committed to the topic more than once with nothing to explain it.
    pub out_twice: Vec<(String, u64)>,
    /// A committed outside record a durable subscription never got: (group, seq).
    pub in_lost: Vec<(String, u64)>,
    /// A record stored twice in one subscription (two message ids).
    pub in_twice: Vec<(String, u64)>,
}

impl BridgeViolations {
    pub fn is_empty(&self) -> bool {
        self.out_lost.is_empty()
            && self.out_twice.is_empty()
            && self.in_lost.is_empty()
            && self.in_twice.is_empty()
    }

    pub fn summary(&self, parts: &mut Vec<String>) {
        let mut add = |what: &str, v: &Vec<(String, u64)>| {
            if let Some((who, seq)) = v.first() {
                parts.push(format!("{} {what} (first: {who}:{seq})", v.len()));
            }
        };
        add("acknowledged but not in the bridged topic", &self.out_lost);
        add("bridged to Kafka twice", &self.out_twice);
        add(
            "Kafka records a durable subscription never got",
            &self.in_lost,
        );
        add("Kafka records ingested twice", &self.in_twice);
    }
}

/// The (producer, seq) a bridged record names in its headers.
fn identity(value: &Option<Bytes>) -> Option<(String, u64)> {
    let (headers, _) = bridge_wire::decode(value.as_ref()?)?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    Some((get(PRODUCER)?.to_string(), get(SEQ)?.parse().ok()?))
}

/// The out rule over the committed records of [`OUT_TOPIC`].
pub fn check_out(clients: &[Client], committed: &[Fetched], v: &mut BridgeViolations) -> u64 {
    let mut copies: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in committed {
        if let Some(id) = identity(&r.value) {
            *copies.entry(id).or_default() += 1;
        }
    }
    for c in clients {
        let Kind::Producer { destination, .. } = &c.kind else {
            continue;
        };
        if destination != OUT_DESTINATION {
            continue;
        }
        for seq in &c.receipted {
            if !copies.contains_key(&(c.name.clone(), *seq)) {
                v.out_lost.push((c.name.clone(), *seq));
            }
        }
    }
    for ((producer, seq), n) in &copies {
        if *n < 2 {
            continue;
        }
        let explained = clients
            .iter()
            .any(|c| &c.name == producer && !c.uses_dup_ids() && c.resent.contains(seq));
        if !explained {
            v.out_twice.push((producer.clone(), *seq));
        }
    }
    copies.len() as u64
}

/// The in rule: the outside producer committed records `0..sent` (its
/// sequence numbers) to [`FEED_TOPIC`].
pub fn check_in(clients: &[Client], sent: u64, v: &mut BridgeViolations) -> u64 {
    let mut delivered = 0;
    let mut groups: BTreeMap<String, BTreeMap<u64, BTreeSet<&str>>> = BTreeMap::new();
    for c in clients {
        let Kind::Consumer {
            destination,
            durable: Some((id, name)),
            ..
        } = &c.kind
        else {
            continue;
        };
        if destination != FEED_DESTINATION {
            continue;
        }
        let group = groups.entry(format!("sub:{id}.{name}")).or_default();
        for d in c.deliveries.iter().filter(|d| d.producer == FEED_PRODUCER) {
            delivered += 1;
            group
                .entry(d.seq)
                .or_default()
                .insert(d.message_id.as_str());
        }
    }
    for (g, seqs) in &groups {
        for seq in 0..sent {
            match seqs.get(&seq) {
                None => v.in_lost.push((g.clone(), seq)),
                Some(ids) if ids.iter().filter(|id| !id.is_empty()).count() > 1 => {
                    v.in_twice.push((g.clone(), seq));
                }
                Some(_) => {}
            }
        }
    }
    delivered
}

/// Has every durable subscription of the fed address every record yet?
/// (The run ends only then.)
pub fn feed_delivered(clients: &[Client], sent: u64) -> bool {
    let mut v = BridgeViolations::default();
    check_in(clients, sent, &mut v);
    v.in_lost.is_empty()
}

/// The headers the outside producer puts on record `seq`, as a simulated
/// producer names its messages.
pub fn feed_headers(seq: u64) -> Vec<(String, Bytes)> {
    vec![
        (PRODUCER.to_string(), Bytes::from(FEED_PRODUCER)),
        (SEQ.to_string(), Bytes::from(seq.to_string())),
        (ORIGIN.to_string(), Bytes::from(FEED_DESTINATION)),
    ]
}
