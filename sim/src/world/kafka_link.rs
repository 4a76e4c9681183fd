//! Requests between nodes and Kafka over the simulated network: latency
//! both ways, nodes cut off from Kafka, replies lost after the request was
//! applied, and a timeout for every request that expects an answer.

use super::events::Event;
use super::kafka_requests::{self, KafkaRequest, RequestKind};
use super::state::World;

impl World {
    /// Sends `request` from node `i` and arms its timeout.
    pub(super) fn request(&mut self, i: usize, kind: RequestKind, request: KafkaRequest) {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let generation = self.nodes[i].generation;
        self.nodes[i].requests_in_flight.insert(request_id, kind);
        let timeout = self.now + self.cfg.request_timeout_ms;
        self.at(
            timeout,
            Event::RequestTimeout {
                node: i,
                generation,
                request_id,
            },
        );
        self.send_to_kafka(i, generation, request_id, request);
    }

    /// Sends `request` from node `i`; its answer is ignored.
    pub(super) fn notify(&mut self, i: usize, request: KafkaRequest) {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let generation = self.nodes[i].generation;
        self.send_to_kafka(i, generation, request_id, request);
    }

    fn send_to_kafka(&mut self, i: usize, generation: u32, request_id: u64, request: KafkaRequest) {
        if self.network.kafka_cut.contains(&i) {
            return;
        }
        let t = self.now + self.latency();
        self.at(
            t,
            Event::ToKafka {
                node: i,
                generation,
                request_id,
                request,
            },
        );
    }

    /// Kafka applies the request; the reply may still be lost on the way back.
    pub(super) fn deliver_to_kafka(
        &mut self,
        node: usize,
        generation: u32,
        request_id: u64,
        request: KafkaRequest,
    ) {
        if self.network.kafka_cut.contains(&node) {
            return;
        }
        let Some(response) = kafka_requests::serve(&mut self.kafka, self.now, request) else {
            return;
        };
        if self.rng.chance(self.network.reply_loss) {
            return;
        }
        let t = self.now + self.latency();
        self.at(
            t,
            Event::FromKafka {
                node,
                generation,
                request_id,
                response,
            },
        );
    }
}
