//! Running the world: start everything, then take events off the queue in
//! time order and hand each to the part of the world it is for.

use halyard_core::ids::ConnId;
use halyard_core::node::{ConnEvent, Input};
use halyard_core::Millis;

use super::events::Event;
use super::network::REPLY_LOSS_NORMAL;
use super::state::World;

impl World {
    /// Starts nodes, clients and faults.
    pub(crate) fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.boot(i);
        }
        for c in 0..self.clients.len() {
            let now = self.now;
            self.client_step(c, |client, out| client.start(now, out));
        }
        if self.cfg.faults {
            let t = self.fault_rng.range(1_000, 3_000);
            self.at(t, Event::Fault);
        }
        let t = self.fault_rng.range(500, 3_000);
        self.at(t, Event::Compact);
        self.start_operator();
        self.start_peers();
    }

    /// Runs events until `until` or until the queue is empty.
    pub(crate) fn run_until(&mut self, until: Millis) {
        while let Some((t, event)) = self.events.pop_due(until) {
            self.now = t;
            self.events_processed += 1;
            self.dispatch(event);
        }
        self.now = self.now.max(until);
    }

    /// The node an event is for, if it is for one.
    fn node_target(&self, event: &Event) -> Option<usize> {
        match event {
            Event::FromKafka { node, .. }
            | Event::RequestTimeout { node, .. }
            | Event::LockHeartbeat { node, .. }
            | Event::NodeTick { node, .. }
            | Event::BridgePoll { node, .. }
            | Event::DiskReading { node }
            | Event::PeerTick { node, .. } => Some(*node),
            Event::PeerLine { to, .. } | Event::PeerClosed { to, .. } => Some(*to),
            Event::BytesToNode { connection, .. } | Event::CloseToNode { connection } => {
                self.network.connections.get(connection).map(|c| c.node)
            }
            _ => None,
        }
    }

    fn dispatch(&mut self, event: Event) {
        // A paused node handles nothing until it resumes; its events wait.
        if let Some(n) = self.node_target(&event) {
            if let Some(until) = self.nodes[n].paused_until {
                if self.now < until {
                    self.at(until, event);
                    return;
                }
                self.nodes[n].paused_until = None;
                self.log(&self.nodes[n].name.clone(), "resumed after pause");
            }
        }
        match event {
            Event::ToKafka {
                node,
                generation,
                request_id,
                request,
            } => self.deliver_to_kafka(node, generation, request_id, request),
            Event::FromKafka {
                node,
                generation,
                request_id,
                response,
            } => {
                if self.nodes[node].generation != generation
                    || self.nodes[node].node.is_none()
                    || self.network.kafka_cut.contains(&node)
                {
                    return;
                }
                if let Some(kind) = self.nodes[node].requests_in_flight.remove(&request_id) {
                    self.on_kafka_response(node, kind, response);
                }
            }
            Event::RequestTimeout {
                node,
                generation,
                request_id,
            } => {
                if self.nodes[node].generation != generation || self.nodes[node].node.is_none() {
                    return;
                }
                if let Some(kind) = self.nodes[node].requests_in_flight.remove(&request_id) {
                    self.on_request_timeout(node, kind);
                }
            }
            Event::LockHeartbeat { node, generation } => {
                if self.nodes[node].generation == generation && self.nodes[node].node.is_some() {
                    self.on_heartbeat_due(node);
                }
            }
            Event::NodeTick { node, generation } => {
                if self.nodes[node].generation == generation && self.nodes[node].node.is_some() {
                    self.nodes[node].tick_at = None;
                    self.feed(node, Input::Tick);
                }
            }
            Event::BridgePoll { node, generation } => {
                if self.nodes[node].generation == generation && self.nodes[node].node.is_some() {
                    self.on_bridge_poll(node);
                }
            }
            Event::FeedProduce => self.feed_produce(),
            Event::BytesToNode { connection, bytes } => {
                let Some(c) = self.network.connections.get(&connection) else {
                    return;
                };
                if !c.node_open || self.nodes[c.node].generation != c.generation {
                    return;
                }
                let node = c.node;
                self.feed(
                    node,
                    Input::Conn(ConnEvent::Received {
                        conn: ConnId(connection),
                        bytes,
                    }),
                );
            }
            Event::CloseToNode { connection } => {
                let Some((node, generation)) = self.network.closed_at_node(connection) else {
                    return;
                };
                if self.nodes[node].generation == generation {
                    self.nodes[node].connections.remove(&connection);
                    self.feed(
                        node,
                        Input::Conn(ConnEvent::Closed {
                            conn: ConnId(connection),
                        }),
                    );
                }
            }
            Event::BytesToClient { connection, bytes } => {
                let Some(c) = self.network.connections.get(&connection) else {
                    return;
                };
                if !c.client_open {
                    return;
                }
                let client = c.client;
                let now = self.now;
                self.client_step(client, |c, out| c.on_bytes(now, &bytes, out));
            }
            Event::CloseToClient { connection } => {
                let Some(client) = self.network.closed_at_client(connection) else {
                    return;
                };
                let now = self.now;
                self.client_step(client, |c, out| c.on_closed(now, out));
            }
            Event::ClientTimer { client } => {
                let now = self.now;
                self.client_step(client, |c, out| c.on_timer(now, out));
            }
            Event::Fault => self.inject_fault(),
            Event::Restart { node } => self.boot(node),
            Event::HealKafkaCut { node } => {
                if self.network.kafka_cut.remove(&node) {
                    let name = self.nodes[node].name.clone();
                    self.log("fault", format!("heal: {name} reaches Kafka again"));
                }
            }
            Event::HealClientCut { client, node } => {
                self.network.client_cut.remove(&(client, node));
            }
            Event::Compact => {
                let mut r = self.fault_rng.fork();
                self.kafka.compact(self.now, &mut r);
                let t = self.now + self.fault_rng.range(1_000, 8_000);
                self.at(t, Event::Compact);
            }
            Event::ReplyLossEnd => self.network.reply_loss = REPLY_LOSS_NORMAL,
            Event::Operator => self.operator_acts(),
            Event::DiskReading { node } => self.tell_disk(node),
            Event::DiskFreed { node } => self.free_disk(node),
            Event::PeerBeat => self.peer_beat(),
            Event::PeerLine {
                from,
                to,
                generation,
                live_epoch,
            } => self.on_peer_line(from, to, generation, live_epoch),
            Event::PeerClosed {
                from,
                to,
                generation,
            } => self.on_peer_closed(from, to, generation),
            Event::PeerTick { node, generation } => self.on_peer_tick(node, generation),
            Event::HealPeerCut { a, b } => {
                if self.peers.heal_cut(a, b) {
                    let (a, b) = (self.nodes[a].name.clone(), self.nodes[b].name.clone());
                    self.log("fault", format!("heal: {a} and {b} reach each other again"));
                }
            }
            Event::PeerSlowEnd => {
                if self.peers.is_slow() {
                    self.peers.slow_down(0);
                    self.log("fault", "heal: the peer network is fast again");
                }
            }
        }
    }
}
