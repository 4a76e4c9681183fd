//! What two brokers' queues hold, in a form that compares: per queue, how
//! many messages it references and a checksum over their ids, sizes and
//! bodies in id order. `halyard mirror compare` replays each broker's
//! journal into a [`Broker`] and compares the digests (after a failover
//! and a catch-up, both brokers must hold the same queues).

use std::collections::BTreeMap;

use crate::broker::Broker;

/// One queue's digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDigest {
    /// Messages the queue references (ready, delivered or scheduled).
    pub messages: u64,
    /// CRC-32C over every message's id, size and body, in id order.
    pub checksum: u32,
}

/// Queue name -> digest, for every queue of `broker`.
pub fn digest(broker: &Broker) -> BTreeMap<String, QueueDigest> {
    let mut out = BTreeMap::new();
    for q in broker.queues() {
        let mut d = QueueDigest {
            messages: 0,
            checksum: 0,
        };
        for (id, _) in q.refs.iter() {
            d.messages += 1;
            let mut head = [0u8; 24];
            head[..8].copy_from_slice(&u64::from(id.epoch).to_be_bytes());
            head[8..16].copy_from_slice(&id.seq.to_be_bytes());
            if let Some(m) = broker.message(*id) {
                head[16..24].copy_from_slice(&(m.size_bytes() as u64).to_be_bytes());
                d.checksum = crc32c::crc32c_append(d.checksum, &head);
                if let Some(body) = m.body.raw() {
                    d.checksum = crc32c::crc32c_append(d.checksum, body);
                }
            } else {
                d.checksum = crc32c::crc32c_append(d.checksum, &head);
            }
        }
        out.insert(q.name.clone(), d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::ids::Id;
    use crate::journal::Routing;
    use crate::journal::{Entry, QueueDef, QueueKind, Record};
    use crate::message::{Body, Message};
    use bytes::Bytes;

    fn broker_with(bodies: &[&str]) -> Broker {
        let mut b = Broker::new(BrokerConfig::default());
        let q = Id::new(1, 1);
        b.apply(&Entry::Put(Record::QueueCreated(QueueDef {
            id: q,
            name: "orders".into(),
            address: "orders".into(),
            kind: QueueKind::Anycast,
        })));
        for (i, body) in bodies.iter().enumerate() {
            let mut m = Message::new(
                "orders",
                Routing::Anycast,
                Body::Bytes(Bytes::copy_from_slice(body.as_bytes())),
            );
            m.durable = true;
            b.apply(&Entry::Put(Record::MessageStored {
                id: Id::new(1, 10 + i as u64),
                queues: vec![q],
                message: std::sync::Arc::new(m),
            }));
        }
        b
    }

    #[test]
    fn same_messages_same_digest_and_any_difference_shows() {
        let a = digest(&broker_with(&["x", "y"]));
        assert_eq!(a, digest(&broker_with(&["x", "y"])));
        assert_eq!(a["orders"].messages, 2);
        assert_ne!(a, digest(&broker_with(&["x", "z"])), "a body differs");
        assert_ne!(a, digest(&broker_with(&["x"])), "a message is missing");
    }
}
