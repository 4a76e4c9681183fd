//! The world's side of each node: boot and crash, feeding inputs and
//! carrying out the node's outputs, and carrying out its drivers' effects.

use std::collections::VecDeque;

use halyard_core::node::{
    AcceptRequest, ConnEvent, ConnRequest, Event as NodeEvent, Input, JournalRequest, LockRequest,
    Node, NodeConfig, Output,
};

use super::effects::Effect;
use super::events::Event;
use super::kafka_requests::{KafkaResponse, RequestKind};
use super::state::World;
#[cfg(feature = "planted-bugs")]
use crate::config::PlantedBug;

/// How long the bridge reader waits before fetching a topic that had nothing new.
const BRIDGE_POLL_MS: u64 = 100;

impl World {
    fn node_config(&self, i: usize) -> NodeConfig {
        #[allow(unused_mut)]
        let mut c = NodeConfig {
            node_id: self.nodes[i].name.clone(),
            role: self.nodes[i].role,
            allow_failback: self.cfg.allow_failback,
            heartbeat_ms: 0,
            drain_timeout_ms: 3_000,
            activation_retry_ms: 500,
            bridge: self.bridge_cfg.clone(),
            memory_max_bytes: self.cfg.memory_max_bytes,
            journal_reads: self.cfg.paging,
            ..NodeConfig::default()
        };
        if let Some(s) = &self.security {
            c.set_security(s.clone());
        }
        #[cfg(feature = "planted-bugs")]
        if let Some(PlantedBug::Core(b)) = self.cfg.planted_bug {
            c.planted_bug = Some(b);
        }
        c
    }

    pub(super) fn boot(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        let cfg = self.node_config(i);
        let host = &mut self.nodes[i];
        host.generation += 1;
        host.node = Some(Node::new(cfg));
        host.paused_until = None;
        host.accepting = false;
        host.tick_at = None;
        host.requests_in_flight.clear();
        host.journal.reset();
        host.lock.reset();
        host.bridge.reset();
        let name = host.name.clone();
        self.peers.booted(i);
        self.log(&name, "boot");
        self.feed(i, Input::Start);
        // The io driver reads the disk as it starts.
        self.tell_disk(i);
    }

    pub(super) fn crash(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        self.log("fault", format!("crash {name}"));
        let host = &mut self.nodes[i];
        host.node = None;
        host.accepting = false;
        self.disk.crashed(i);
        let host = &mut self.nodes[i];
        host.requests_in_flight.clear();
        host.journal.reset();
        host.bridge.reset();
        let connections = std::mem::take(&mut host.connections);
        for c in connections {
            if let Some(t) = self.network.node_crashed(c, self.now) {
                self.at(t, Event::CloseToClient { connection: c });
            }
        }
        self.peers_see_crash(i);
        self.note_live_nodes();
    }

    /// Gives the node `input`, carries out its outputs (which may yield more
    /// inputs, handled in turn) and schedules its next tick.
    pub(super) fn feed(&mut self, i: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.now;
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            node.handle(now, input);
            while let Some(out) = self.nodes[i].node.as_mut().and_then(Node::poll_output) {
                self.perform(i, out, &mut inputs);
            }
            if cfg!(debug_assertions) {
                self.check_invariants(i);
            }
        }
        if let Some(node) = self.nodes[i].node.as_ref() {
            if let Some(d) = node.next_deadline() {
                let host = &mut self.nodes[i];
                if host.tick_at.is_none_or(|t| d < t) {
                    host.tick_at = Some(d);
                    let generation = host.generation;
                    self.at(
                        d,
                        Event::NodeTick {
                            node: i,
                            generation,
                        },
                    );
                }
            }
        }
    }

    /// Feeds each input as its own step.
    fn feed_all(&mut self, i: usize, inputs: VecDeque<Input>) {
        for input in inputs {
            self.feed(i, input);
        }
    }

    /// Records the first broken invariant of node `i`; the run stops there.
    fn check_invariants(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        self.invariant_checks += 1;
        if let Err(e) = node.check_invariants() {
            if self.broken_invariant.is_none() {
                let what = format!("{} at {} ms: {e}", self.nodes[i].name, self.now);
                self.log("sim", format!("invariant broken: {what}"));
                self.broken_invariant = Some(what);
            }
        }
    }

    /// Carries out one output of node `i`; the inputs it yields (a flushed
    /// send, what a driver has for the node) join `inputs`.
    fn perform(&mut self, i: usize, out: Output, inputs: &mut VecDeque<Input>) {
        let mut effects = std::mem::take(&mut self.effects);
        match out {
            Output::Conn(ConnRequest::Send { conn, bytes }) => {
                let n = bytes.len();
                let latency = self.latency();
                if let Some(t) = self.network.send_to_client(conn.0, self.now, latency) {
                    self.at(
                        t,
                        Event::BytesToClient {
                            connection: conn.0,
                            // One event per send, as the pieces leave in
                            // one write.
                            bytes: bytes.joined(),
                        },
                    );
                }
                inputs.push_back(Input::Conn(ConnEvent::Flushed { conn, bytes: n }));
            }
            Output::Conn(ConnRequest::Close { conn }) => {
                self.nodes[i].connections.remove(&conn.0);
                if let Some(t) = self.network.close_by_node(conn.0, self.now) {
                    self.at(t, Event::CloseToClient { connection: conn.0 });
                }
            }
            Output::Conn(ConnRequest::PauseReading { .. }) => self.disk.paused_reading(i),
            Output::Conn(ConnRequest::ResumeReading { .. }) => {}
            // The io driver verifies off its event loop; here the answer
            // comes within the same step.
            Output::Conn(ConnRequest::CheckPassword {
                conn,
                hash,
                password,
            }) => {
                let ok = *self
                    .password_checks
                    .entry((hash, password.0))
                    .or_insert_with_key(|(hash, password)| {
                        halyard_core::security::password::verify(hash, password)
                    });
                inputs.push_back(Input::Conn(ConnEvent::PasswordChecked { conn, ok }));
            }
            // Requests in flight stay in flight through a close: the group
            // commit waits for the write in flight before it closes, as the
            // io drivers do.
            Output::Journal(request) => {
                if let JournalRequest::Append { entries, .. } = &request {
                    let name = &self.nodes[i].name;
                    self.disk.appended(i, name, entries);
                }
                let host = &mut self.nodes[i];
                let epoch = host.node_epoch();
                host.journal.request(request, epoch, &mut effects);
            }
            Output::Lock(LockRequest::Acquire) => self.nodes[i].lock.acquire(&mut effects),
            Output::Lock(LockRequest::Release) => self.nodes[i].lock.release(&mut effects),
            Output::Accept(AcceptRequest::Start) => {
                self.nodes[i].accepting = true;
                self.note_live_nodes();
            }
            Output::Accept(AcceptRequest::Stop) => {
                self.nodes[i].accepting = false;
                self.note_live_nodes();
            }
            Output::Event(e) => {
                self.disk.heard(i, &e);
                self.count_preemption(i, &e);
                let name = self.nodes[i].name.clone();
                if e.is_state_change() {
                    self.log(&name, e.to_string());
                }
            }
            Output::Admin { id, result } => self.operator_heard(i, id, result),
            Output::Stopped => {}
            Output::Bridge(request) => {
                let cfg = self
                    .bridge_cfg
                    .as_ref()
                    .expect("a node asks its bridge only when it has one");
                self.nodes[i].bridge.request(request, cfg, &mut effects);
            }
        }
        self.apply_effects(i, &mut effects, inputs);
        self.effects = effects;
    }

    /// Counts what fenced preemption did; a preempting node's next journal
    /// open is told so (for the planted bug that skips its fencing).
    fn count_preemption(&mut self, i: usize, e: &NodeEvent) {
        let stats = &mut self.peers.stats;
        match e {
            NodeEvent::Preempting { .. } => {
                stats.preemptions += 1;
                self.nodes[i].journal.preempting();
            }
            NodeEvent::SupersededByPeer { .. } => stats.superseded += 1,
            NodeEvent::Fenced { .. } => stats.fenced += 1,
            _ => {}
        }
    }

    /// Sends the requests now, in order; queues the inputs for the node.
    fn apply_effects(&mut self, i: usize, effects: &mut Vec<Effect>, inputs: &mut VecDeque<Input>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Request(kind, request) => self.request(i, kind, request),
                Effect::Notify(request) => self.notify(i, request),
                Effect::Input(input) => inputs.push_back(input),
                Effect::ArmBridgePoll => {
                    let generation = self.nodes[i].generation;
                    let t = self.now + BRIDGE_POLL_MS;
                    self.at(
                        t,
                        Event::BridgePoll {
                            node: i,
                            generation,
                        },
                    );
                }
                Effect::ArmHeartbeat => {
                    let generation = self.nodes[i].generation;
                    let t = self.now + self.cfg.lock_heartbeat_ms;
                    self.at(
                        t,
                        Event::LockHeartbeat {
                            node: i,
                            generation,
                        },
                    );
                }
            }
        }
    }

    /// Hands Kafka's answer to the driver that asked, then feeds the node
    /// what the driver has for it.
    pub(super) fn on_kafka_response(
        &mut self,
        i: usize,
        kind: RequestKind,
        response: KafkaResponse,
    ) {
        let mut effects = std::mem::take(&mut self.effects);
        let now = self.now;
        let host = &mut self.nodes[i];
        let epoch = host.node_epoch();
        match (kind, response) {
            (
                RequestKind::InitProducerId,
                KafkaResponse::ProducerId {
                    producer_id,
                    producer_epoch,
                },
            ) => host
                .journal
                .on_producer_id(producer_id, producer_epoch, &mut effects),
            (RequestKind::EndOffset, KafkaResponse::EndOffset(end)) => {
                host.journal.on_end_offset(end, epoch, &mut effects);
            }
            (RequestKind::Fetch, KafkaResponse::Fetched(f)) => {
                host.journal
                    .on_fetched(&f, &mut self.decoded, epoch, &mut effects);
            }
            (RequestKind::ReadFetch, KafkaResponse::Fetched(f)) => {
                host.journal
                    .on_read_fetched(&f, &mut self.decoded, epoch, &mut effects);
            }
            (RequestKind::Produce, KafkaResponse::Produced(r)) => {
                host.journal.on_produced(r, epoch, &mut effects);
            }
            (RequestKind::EndTransaction, KafkaResponse::TransactionEnded(r)) => {
                host.journal.on_transaction_ended(r, epoch, &mut effects);
            }
            (RequestKind::LatestActivation, KafkaResponse::LatestActivation(v)) => {
                host.journal
                    .on_latest_activation(v.as_deref(), epoch, &mut effects);
            }
            (RequestKind::BridgeFetch, KafkaResponse::TopicFetched { topic, result }) => {
                if let Some(cfg) = self.bridge_cfg.as_ref() {
                    host.bridge.on_fetched(topic, result, cfg, &mut effects);
                }
            }
            (RequestKind::JoinGroup | RequestKind::Heartbeat, KafkaResponse::Group(r)) => {
                host.lock.on_group(r, now, &mut effects);
            }
            _ => {}
        }
        let mut inputs = VecDeque::new();
        self.apply_effects(i, &mut effects, &mut inputs);
        self.effects = effects;
        self.feed_all(i, inputs);
    }

    pub(super) fn on_request_timeout(&mut self, i: usize, kind: RequestKind) {
        let mut effects = std::mem::take(&mut self.effects);
        let host = &mut self.nodes[i];
        // Lock requests count too: they go to the same Kafka, so a node that
        // cannot reach it gives up opening the journal sooner.
        host.journal.attempts += 1;
        if kind.is_lock() {
            host.lock.on_timeout();
        } else if kind == RequestKind::BridgeFetch {
            if let Some(cfg) = self.bridge_cfg.as_ref() {
                host.bridge.on_timeout(cfg, &mut effects);
            }
        } else {
            let epoch = host.node_epoch();
            host.journal.on_timeout(kind, epoch, &mut effects);
        }
        let mut inputs = VecDeque::new();
        self.apply_effects(i, &mut effects, &mut inputs);
        self.effects = effects;
        self.feed_all(i, inputs);
    }

    pub(super) fn on_heartbeat_due(&mut self, i: usize) {
        let mut effects = std::mem::take(&mut self.effects);
        let (now, session_ms) = (self.now, self.cfg.kafka.session_timeout_ms);
        self.nodes[i]
            .lock
            .on_heartbeat_due(now, session_ms, &mut effects);
        let mut inputs = VecDeque::new();
        self.apply_effects(i, &mut effects, &mut inputs);
        self.effects = effects;
        self.feed_all(i, inputs);
    }

    /// The bridge reader's poll came due.
    pub(super) fn on_bridge_poll(&mut self, i: usize) {
        let Some(cfg) = self.bridge_cfg.as_ref() else {
            return;
        };
        let mut effects = std::mem::take(&mut self.effects);
        self.nodes[i].bridge.poll(cfg, &mut effects);
        let mut inputs = VecDeque::new();
        self.apply_effects(i, &mut effects, &mut inputs);
        self.effects = effects;
        self.feed_all(i, inputs);
    }

    /// The node that is live now, if any.
    pub(super) fn live_node(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|host| host.node.as_ref().is_some_and(Node::is_live))
    }
}
