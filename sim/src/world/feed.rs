//! The outside Kafka producer: once every durable subscription exists, it
//! writes `feed_records` records to the fed topic (plain, non-transactional
//! writes, as kcat or a Kafka Connect task would), one every 20-300 ms,
//! faults or not (Kafka itself is not faulted). The bridge brings them in.

use bytes::Bytes;

use super::events::Event;
use super::state::World;
use crate::bridge_check::{feed_headers, FEED_TOPIC};
use crate::bridge_wire;

impl World {
    /// Starts the feed once every durable subscriber has subscribed.
    pub(crate) fn start_feed_when_ready(&mut self) {
        if self.feed.started || self.feed.total == 0 {
            return;
        }
        let ready = self.durable_subscriptions_exist();
        if ready {
            self.feed.started = true;
            self.kafka.create_plain_topic(FEED_TOPIC, 1);
            self.log("feed", "outside Kafka producer starts");
            self.at(self.now, Event::FeedProduce);
        }
    }

    pub(super) fn feed_produce(&mut self) {
        if self.feed.done() {
            return;
        }
        let seq = self.feed.sent;
        let value = bridge_wire::encode(&feed_headers(seq), format!("feed {seq}").as_bytes());
        let key = Bytes::from(format!("k{seq}"));
        self.kafka
            .produce_plain(self.now, FEED_TOPIC, 0, &[(key, Some(value))])
            .expect("the fed topic exists");
        self.feed.sent += 1;
        if !self.feed.done() {
            let t = self.now + self.feed.rng.range(20, 300);
            self.at(t, Event::FeedProduce);
        }
    }
}
