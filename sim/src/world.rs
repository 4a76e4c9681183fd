//! The simulated world: Kafka, nodes with their drivers, the network,
//! clients and faults, all advanced by one event queue in virtual time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use bytes::Bytes;
use halyard_core::ha::Role;
use halyard_core::ids::{ConnId, Ticket};
use halyard_core::journal::{decode_entry, encode_entry, Entry};
use halyard_core::node::{
    AcceptRequest, ConnEvent, ConnRequest, Input, JournalEvent, JournalRequest, LockEvent,
    LockRequest, Node, NodeConfig, Output,
};

use crate::client::{AckStyle, Action, Client, Kind};
use crate::config::{DriverBug, PlantedBug, SimConfig};
use crate::kafka::{FetchResult, GroupStatus, KafkaError, KafkaModel, Writer};
use crate::rng::Rng;
use crate::trace::Trace;

pub type Millis = u64;

pub const JOURNAL_TOPIC: &str = "halyard-journal";
pub const LOCK_GROUP: &str = "halyard-lock";
const TXN_ID: &str = "halyard-cluster";
/// Journal batches per Kafka transaction (group commit).
const TXN_BATCHES_MAX: usize = 64;
const FETCH_RECORDS_MAX: usize = 500;
const ATTEMPTS_MAX: u32 = 3;

#[derive(Clone, Debug)]
enum KReq {
    InitPid {
        txn_id: String,
    },
    EndOffset,
    Fetch {
        offset: u64,
    },
    Produce {
        txn_id: String,
        pid: u64,
        epoch: u16,
        seq: u64,
        records: std::sync::Arc<Vec<(Bytes, Option<Bytes>)>>,
        writer: Writer,
    },
    EndTxn {
        txn_id: String,
        pid: u64,
        epoch: u16,
        commit: bool,
    },
    LatestActivation,
    Join {
        member: String,
    },
    Heartbeat {
        member: String,
    },
    Leave {
        member: String,
    },
}

#[derive(Clone, Debug)]
enum KResp {
    Pid(u64, u16),
    End(u64),
    Fetched(FetchResult),
    Produced(Result<u64, KafkaError>),
    Ended(Result<(), KafkaError>),
    Activation(Option<Bytes>),
    Group(Result<GroupStatus, KafkaError>),
    Left,
}

#[derive(Clone, Debug)]
enum Ev {
    ToKafka {
        node: usize,
        gen: u32,
        rid: u64,
        req: KReq,
    },
    FromKafka {
        node: usize,
        gen: u32,
        rid: u64,
        resp: KResp,
    },
    Timeout {
        node: usize,
        gen: u32,
        rid: u64,
    },
    Heartbeat {
        node: usize,
        gen: u32,
    },
    NodeTick {
        node: usize,
        gen: u32,
    },
    ToNode {
        conn: u64,
        bytes: Bytes,
    },
    ToClient {
        conn: u64,
        bytes: Bytes,
    },
    CloseToNode {
        conn: u64,
    },
    CloseToClient {
        conn: u64,
    },
    ClientTimer {
        client: usize,
    },
    Fault,
    Restart {
        node: usize,
    },
    HealKafka {
        node: usize,
    },
    HealClient {
        client: usize,
        node: usize,
    },
    Compact,
    ReplyLossEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum JState {
    Closed,
    Init,
    EndOffset,
    Loading { offset: u64, end: u64 },
    Open,
}

#[derive(Clone, Debug)]
enum ReqKind {
    Init,
    EndOffset,
    Fetch,
    Produce,
    EndTxn,
    Activation,
    Join,
    Heartbeat,
}

struct Txn {
    tickets: Vec<Ticket>,
    records: std::sync::Arc<Vec<(Bytes, Option<Bytes>)>>,
    seq: u64,
    committing: bool,
    attempts: u32,
    acked_early: bool,
}

struct NodeHost {
    name: String,
    role: Role,
    node: Option<Node>,
    gen: u32,
    paused_until: Option<Millis>,
    accepting: bool,
    tick_at: Option<Millis>,
    conns: BTreeSet<u64>,
    // journal driver
    j: JState,
    queue: VecDeque<(Ticket, Vec<Entry>)>,
    txn: Option<Txn>,
    pid: u64,
    epoch: u16,
    seq: u64,
    txn_id: String,
    activations: u64,
    attempts: u32,
    outstanding: BTreeMap<u64, ReqKind>,
    // lock driver
    want_lock: bool,
    member: bool,
    joining: bool,
    held: bool,
    last_ok: Millis,
    announced: bool,
    handback_sent: bool,
    hb_running: bool,
}

impl NodeHost {
    fn member_name(&self) -> String {
        // A failback primary sorts first, so a free lock goes to it.
        let rank = if self.role == Role::Primary { 0 } else { 1 };
        format!("{rank}-{}", self.name)
    }
}

struct SimConn {
    client: usize,
    node: usize,
    gen: u32,
    node_open: bool,
    client_open: bool,
    to_node_at: Millis,
    to_client_at: Millis,
}

/// Fault counters for the summary.
#[derive(Clone, Debug, Default)]
pub struct FaultStats {
    pub by_kind: BTreeMap<&'static str, u64>,
}

pub struct World {
    pub cfg: SimConfig,
    pub now: Millis,
    rng: Rng,
    fault_rng: Rng,
    /// Due events as (time, order of scheduling, slot in `slots`); the
    /// smallest runs first. Events themselves wait in `slots`, so the heap
    /// moves only small keys.
    events: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    slots: Vec<Option<Ev>>,
    free_slots: Vec<usize>,
    seq: u64,
    pub kafka: KafkaModel,
    nodes: Vec<NodeHost>,
    conns: BTreeMap<u64, SimConn>,
    next_conn: u64,
    next_rid: u64,
    pub clients: Vec<Client>,
    /// The connection each client is using (or trying), if any.
    client_conn: Vec<Option<u64>>,
    pub trace: Trace,
    kafka_cut: BTreeSet<usize>,
    client_cut: BTreeSet<(usize, usize)>,
    reply_loss: f64,
    pub faults: FaultStats,
    pub events_processed: u64,
    decoded: DecodedRecords,
}

/// Journal records already decoded, by offset. A Kafka offset holds the
/// same record for ever (compaction removes records, never changes them)
/// and decoding is a pure function of its bytes, so every node's reload
/// after the first takes a copy of the entry instead of decoding again.
#[derive(Default)]
struct DecodedRecords {
    by_offset: Vec<Option<Entry>>,
}

impl DecodedRecords {
    fn get(
        &mut self,
        offset: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Entry, halyard_core::journal::CodecError> {
        let i = usize::try_from(offset).expect("offsets fit in memory");
        if let Some(Some(e)) = self.by_offset.get(i) {
            return Ok(e.clone());
        }
        let e = decode_entry(key, value)?;
        if self.by_offset.len() <= i {
            self.by_offset.resize(i + 1, None);
        }
        self.by_offset[i] = Some(e.clone());
        Ok(e)
    }
}

impl World {
    pub fn new(cfg: SimConfig, trace: Trace) -> World {
        let mut rng = Rng::new(cfg.seed);
        let fault_rng = rng.fork();
        let mut kafka = KafkaModel::new(cfg.kafka.clone());
        kafka.create_topic(JOURNAL_TOPIC, 1);
        let nodes = (0..cfg.nodes)
            .map(|i| NodeHost {
                name: format!("n{}", i + 1),
                role: if i == 0 { Role::Primary } else { Role::Backup },
                node: None,
                gen: 0,
                paused_until: None,
                accepting: false,
                tick_at: None,
                conns: BTreeSet::new(),
                j: JState::Closed,
                queue: VecDeque::new(),
                txn: None,
                pid: 0,
                epoch: 0,
                seq: 0,
                txn_id: TXN_ID.to_string(),
                activations: 0,
                attempts: 0,
                outstanding: BTreeMap::new(),
                want_lock: false,
                member: false,
                joining: false,
                held: false,
                last_ok: 0,
                announced: false,
                handback_sent: false,
                hb_running: false,
            })
            .collect();
        let mut w = World {
            cfg,
            now: 0,
            rng,
            fault_rng,
            events: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            kafka,
            nodes,
            conns: BTreeMap::new(),
            next_conn: 1,
            next_rid: 1,
            clients: Vec::new(),
            client_conn: Vec::new(),
            trace,
            kafka_cut: BTreeSet::new(),
            client_cut: BTreeSet::new(),
            reply_loss: 0.002,
            faults: FaultStats::default(),
            events_processed: 0,
            decoded: DecodedRecords::default(),
        };
        w.make_clients();
        w
    }

    fn make_clients(&mut self) {
        let c = self.cfg.clone();
        let n = c.nodes;
        let add = |w: &mut World, name: String, kind: Kind| {
            let r = w.rng.fork();
            w.clients.push(Client::new(name, kind, n, r));
        };
        for i in 0..c.queue_producers {
            add(
                self,
                format!("qp{i}"),
                Kind::Producer {
                    dest: "/queue/orders".into(),
                    total: c.messages_per_producer,
                    window: 20,
                    dup_ids: c.duplicate_ids,
                    tx_size: None,
                    wait_for_subscriptions: false,
                },
            );
        }
        for i in 0..c.tx_producers {
            add(
                self,
                format!("tp{i}"),
                Kind::Producer {
                    dest: "/queue/orders".into(),
                    total: c.messages_per_producer,
                    window: 20,
                    dup_ids: c.duplicate_ids,
                    tx_size: Some(5),
                    wait_for_subscriptions: false,
                },
            );
        }
        for i in 0..c.topic_producers {
            add(
                self,
                format!("tpub{i}"),
                Kind::Producer {
                    dest: "/topic/events".into(),
                    total: c.messages_per_producer,
                    window: 20,
                    dup_ids: c.duplicate_ids,
                    tx_size: None,
                    wait_for_subscriptions: true,
                },
            );
        }
        for i in 0..c.queue_consumers {
            let ack = match i % 3 {
                0 => AckStyle::Individual,
                1 => AckStyle::Cumulative,
                _ => AckStyle::Transactional,
            };
            add(
                self,
                format!("qc{i}"),
                Kind::Consumer {
                    dest: "/queue/orders".into(),
                    ack,
                    durable: None,
                    nack_chance: 0.02,
                },
            );
        }
        for i in 0..c.durable_subscribers {
            add(
                self,
                format!("ds{i}"),
                Kind::Consumer {
                    dest: "/topic/events".into(),
                    ack: AckStyle::Individual,
                    durable: Some((format!("app{i}"), "feed".into())),
                    nack_chance: 0.0,
                },
            );
        }
        // At-most-once traffic: an auto-ack consumer may lose what was in
        // flight when its connection broke, so its queue is not checked for loss.
        add(
            self,
            "ap0".into(),
            Kind::Producer {
                dest: "/queue/telemetry".into(),
                total: c.messages_per_producer / 2,
                window: 20,
                dup_ids: c.duplicate_ids,
                tx_size: None,
                wait_for_subscriptions: false,
            },
        );
        add(
            self,
            "ac0".into(),
            Kind::Consumer {
                dest: "/queue/telemetry".into(),
                ack: AckStyle::Auto,
                durable: None,
                nack_chance: 0.0,
            },
        );
        add(
            self,
            "dlq".into(),
            Kind::Consumer {
                dest: "/queue/DLQ".into(),
                ack: AckStyle::Individual,
                durable: None,
                nack_chance: 0.0,
            },
        );
        self.client_conn = vec![None; self.clients.len()];
        let verbose = self.trace.keeps();
        for c in &mut self.clients {
            c.verbose = verbose;
        }
    }

    fn at(&mut self, t: Millis, ev: Ev) {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.events.push(Reverse((t.max(self.now), self.seq, slot)));
    }

    fn latency(&mut self) -> Millis {
        if self.rng.chance(0.05) {
            self.rng.range(5, 60)
        } else {
            self.rng.range(1, 4)
        }
    }

    fn log(&mut self, who: &str, what: impl AsRef<str>) {
        self.trace.line(self.now, who, what.as_ref());
    }

    // ------------------------------------------------------------- running

    /// Starts nodes, clients and faults.
    pub fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.boot(i);
        }
        for c in 0..self.clients.len() {
            let acts = self.clients[c].start(self.now);
            self.client_actions(c, acts);
        }
        if self.cfg.faults {
            let t = self.fault_rng.range(1_000, 3_000);
            self.at(t, Ev::Fault);
        }
        let t = self.fault_rng.range(500, 3_000);
        self.at(t, Ev::Compact);
    }

    /// Runs events until `until` or until the queue is empty.
    pub fn run_until(&mut self, until: Millis) {
        while self.events.peek().is_some_and(|e| e.0 .0 <= until) {
            let Some(Reverse((t, _, slot))) = self.events.pop() else {
                break;
            };
            let ev = self.slots[slot].take().expect("a scheduled event");
            self.free_slots.push(slot);
            self.now = t;
            self.events_processed += 1;
            self.dispatch(ev);
        }
        self.now = self.now.max(until);
    }

    fn node_target(ev: &Ev, conns: &BTreeMap<u64, SimConn>) -> Option<usize> {
        match ev {
            Ev::FromKafka { node, .. }
            | Ev::Timeout { node, .. }
            | Ev::Heartbeat { node, .. }
            | Ev::NodeTick { node, .. } => Some(*node),
            Ev::ToNode { conn, .. } | Ev::CloseToNode { conn } => conns.get(conn).map(|c| c.node),
            _ => None,
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        // A paused node handles nothing until it resumes; its events wait.
        if let Some(n) = Self::node_target(&ev, &self.conns) {
            if let Some(until) = self.nodes[n].paused_until {
                if self.now < until {
                    self.at(until, ev);
                    return;
                }
                self.nodes[n].paused_until = None;
                self.log(&self.nodes[n].name.clone(), "resumed after pause");
            }
        }
        match ev {
            Ev::ToKafka {
                node,
                gen,
                rid,
                req,
            } => self.kafka_request(node, gen, rid, req),
            Ev::FromKafka {
                node,
                gen,
                rid,
                resp,
            } => {
                if self.nodes[node].gen != gen
                    || self.nodes[node].node.is_none()
                    || self.kafka_cut.contains(&node)
                {
                    return;
                }
                if let Some(kind) = self.nodes[node].outstanding.remove(&rid) {
                    self.on_response(node, kind, resp);
                }
            }
            Ev::Timeout { node, gen, rid } => {
                if self.nodes[node].gen != gen || self.nodes[node].node.is_none() {
                    return;
                }
                if let Some(kind) = self.nodes[node].outstanding.remove(&rid) {
                    self.on_timeout(node, kind);
                }
            }
            Ev::Heartbeat { node, gen } => {
                if self.nodes[node].gen == gen && self.nodes[node].node.is_some() {
                    self.heartbeat_tick(node);
                }
            }
            Ev::NodeTick { node, gen } => {
                if self.nodes[node].gen == gen && self.nodes[node].node.is_some() {
                    self.nodes[node].tick_at = None;
                    self.feed(node, Input::Tick);
                }
            }
            Ev::ToNode { conn, bytes } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                if !c.node_open || self.nodes[c.node].gen != c.gen {
                    return;
                }
                let node = c.node;
                self.feed(
                    node,
                    Input::Conn(ConnEvent::Received {
                        conn: ConnId(conn),
                        bytes,
                    }),
                );
            }
            Ev::CloseToNode { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if !c.node_open {
                    return;
                }
                c.node_open = false;
                let (node, gen) = (c.node, c.gen);
                if !c.client_open {
                    self.conns.remove(&conn);
                }
                if self.nodes[node].gen == gen {
                    self.nodes[node].conns.remove(&conn);
                    self.feed(node, Input::Conn(ConnEvent::Closed { conn: ConnId(conn) }));
                }
            }
            Ev::ToClient { conn, bytes } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                if !c.client_open {
                    return;
                }
                let client = c.client;
                let acts = self.clients[client].on_bytes(self.now, &bytes);
                self.client_actions(client, acts);
            }
            Ev::CloseToClient { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if !c.client_open {
                    return;
                }
                c.client_open = false;
                let client = c.client;
                if !c.node_open {
                    self.conns.remove(&conn);
                }
                if self.client_conn[client] == Some(conn) {
                    self.client_conn[client] = None;
                }
                let acts = self.clients[client].on_closed(self.now);
                self.client_actions(client, acts);
            }
            Ev::ClientTimer { client } => {
                let acts = self.clients[client].on_timer(self.now);
                self.client_actions(client, acts);
            }
            Ev::Fault => self.inject_fault(),
            Ev::Restart { node } => self.boot(node),
            Ev::HealKafka { node } => {
                if self.kafka_cut.remove(&node) {
                    let name = self.nodes[node].name.clone();
                    self.log("fault", format!("heal: {name} reaches Kafka again"));
                }
            }
            Ev::HealClient { client, node } => {
                self.client_cut.remove(&(client, node));
            }
            Ev::Compact => {
                let mut r = self.fault_rng.fork();
                self.kafka.compact(self.now, &mut r);
                let t = self.now + self.fault_rng.range(1_000, 8_000);
                self.at(t, Ev::Compact);
            }
            Ev::ReplyLossEnd => self.reply_loss = 0.002,
        }
    }

    // --------------------------------------------------------------- nodes

    fn node_config(&self, i: usize) -> NodeConfig {
        #[allow(unused_mut)]
        let mut c = NodeConfig {
            node_id: self.nodes[i].name.clone(),
            role: self.nodes[i].role,
            allow_failback: self.cfg.allow_failback,
            heartbeat_ms: 0,
            drain_timeout_ms: 3_000,
            activation_retry_ms: 500,
            ..NodeConfig::default()
        };
        #[cfg(feature = "planted-bugs")]
        if let Some(PlantedBug::Core(b)) = self.cfg.planted_bug {
            c.planted_bug = Some(b);
        }
        c
    }

    fn boot(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        let cfg = self.node_config(i);
        let h = &mut self.nodes[i];
        h.gen += 1;
        h.node = Some(Node::new(cfg));
        h.paused_until = None;
        h.accepting = false;
        h.tick_at = None;
        h.j = JState::Closed;
        h.queue.clear();
        h.txn = None;
        h.outstanding.clear();
        h.want_lock = false;
        h.member = false;
        h.joining = false;
        h.held = false;
        h.announced = false;
        h.handback_sent = false;
        h.hb_running = false;
        let name = h.name.clone();
        self.log(&name, "boot");
        self.feed(i, Input::Start);
    }

    fn crash(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        self.log("fault", format!("crash {name}"));
        let h = &mut self.nodes[i];
        h.node = None;
        h.accepting = false;
        h.outstanding.clear();
        h.txn = None;
        h.queue.clear();
        let conns: Vec<u64> = std::mem::take(&mut h.conns).into_iter().collect();
        for c in conns {
            if let Some(sc) = self.conns.get_mut(&c) {
                sc.node_open = false;
                let t = sc.to_client_at.max(self.now) + 1;
                self.at(t, Ev::CloseToClient { conn: c });
            }
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
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
        }
        if let Some(node) = self.nodes[i].node.as_ref() {
            if let Some(d) = node.next_deadline() {
                let h = &mut self.nodes[i];
                if h.tick_at.is_none_or(|t| d < t) {
                    h.tick_at = Some(d);
                    let gen = h.gen;
                    self.at(d, Ev::NodeTick { node: i, gen });
                }
            }
        }
    }

    fn perform(&mut self, i: usize, out: Output, inputs: &mut VecDeque<Input>) {
        match out {
            Output::Conn(ConnRequest::Send { conn, bytes }) => {
                let n = bytes.len();
                let lat = self.latency();
                if let Some(c) = self.conns.get_mut(&conn.0) {
                    if c.node_open {
                        let t = (self.now + lat).max(c.to_client_at);
                        c.to_client_at = t;
                        self.at(
                            t,
                            Ev::ToClient {
                                conn: conn.0,
                                bytes,
                            },
                        );
                    }
                }
                inputs.push_back(Input::Conn(ConnEvent::Flushed { conn, bytes: n }));
            }
            Output::Conn(ConnRequest::Close { conn }) => {
                self.nodes[i].conns.remove(&conn.0);
                if let Some(c) = self.conns.get_mut(&conn.0) {
                    if c.node_open {
                        c.node_open = false;
                        let t = c.to_client_at.max(self.now) + 1;
                        self.at(t, Ev::CloseToClient { conn: conn.0 });
                    }
                }
            }
            Output::Conn(ConnRequest::PauseReading { .. } | ConnRequest::ResumeReading { .. }) => {}
            Output::Journal(JournalRequest::Append { ticket, entries }) => {
                self.nodes[i].queue.push_back((ticket, entries));
                self.pump_journal(i, inputs);
            }
            Output::Journal(JournalRequest::Open) => {
                let h = &mut self.nodes[i];
                h.j = JState::Init;
                h.attempts = 0;
                h.txn = None;
                h.queue.clear();
                h.activations += 1;
                if self.cfg.planted_bug == Some(PlantedBug::Driver(DriverBug::SkipFencing)) {
                    h.txn_id = format!("{TXN_ID}-{}-{}", h.name, h.activations);
                }
                let txn_id = h.txn_id.clone();
                self.request(i, ReqKind::Init, KReq::InitPid { txn_id });
            }
            Output::Journal(JournalRequest::Close) => {
                let h = &mut self.nodes[i];
                h.j = JState::Closed;
                h.txn = None;
                h.queue.clear();
                h.outstanding
                    .retain(|_, k| matches!(k, ReqKind::Join | ReqKind::Heartbeat));
            }
            Output::Lock(LockRequest::Acquire) => {
                self.nodes[i].want_lock = true;
                self.nodes[i].handback_sent = false;
                self.join(i);
                self.ensure_heartbeats(i);
            }
            Output::Lock(LockRequest::Release) => {
                let h = &mut self.nodes[i];
                h.want_lock = false;
                h.held = false;
                h.announced = false;
                if h.member || h.joining {
                    h.member = false;
                    h.joining = false;
                    let member = h.member_name();
                    self.send_oneway(i, KReq::Leave { member });
                }
            }
            Output::Accept(AcceptRequest::Start) => self.nodes[i].accepting = true,
            Output::Accept(AcceptRequest::Stop) => self.nodes[i].accepting = false,
            Output::Event(e) => {
                let name = self.nodes[i].name.clone();
                if e.is_state_change() {
                    self.log(&name, e.to_string());
                }
            }
            Output::Stopped => {}
        }
    }

    // ------------------------------------------------------ Kafka plumbing

    fn request(&mut self, i: usize, kind: ReqKind, req: KReq) {
        let rid = self.next_rid;
        self.next_rid += 1;
        let gen = self.nodes[i].gen;
        self.nodes[i].outstanding.insert(rid, kind);
        let timeout = self.now + self.cfg.request_timeout_ms;
        self.at(timeout, Ev::Timeout { node: i, gen, rid });
        if !self.kafka_cut.contains(&i) {
            let t = self.now + self.latency();
            self.at(
                t,
                Ev::ToKafka {
                    node: i,
                    gen,
                    rid,
                    req,
                },
            );
        }
    }

    fn send_oneway(&mut self, i: usize, req: KReq) {
        let rid = self.next_rid;
        self.next_rid += 1;
        if !self.kafka_cut.contains(&i) {
            let gen = self.nodes[i].gen;
            let t = self.now + self.latency();
            self.at(
                t,
                Ev::ToKafka {
                    node: i,
                    gen,
                    rid,
                    req,
                },
            );
        }
    }

    fn kafka_request(&mut self, node: usize, gen: u32, rid: u64, req: KReq) {
        if self.kafka_cut.contains(&node) {
            return;
        }
        let now = self.now;
        let k = &mut self.kafka;
        let resp = match req {
            KReq::InitPid { txn_id } => {
                let (pid, epoch) = k.init_producer_id(now, &txn_id);
                KResp::Pid(pid, epoch)
            }
            KReq::EndOffset => {
                KResp::End(k.end_offset_committed(now, JOURNAL_TOPIC, 0).unwrap_or(0))
            }
            KReq::Fetch { offset } => {
                match k.fetch_committed(now, JOURNAL_TOPIC, 0, offset, FETCH_RECORDS_MAX) {
                    Ok(f) => KResp::Fetched(f),
                    Err(_) => return,
                }
            }
            KReq::Produce {
                txn_id,
                pid,
                epoch,
                seq,
                records,
                writer,
            } => KResp::Produced(k.produce(
                now,
                &txn_id,
                pid,
                epoch,
                seq,
                JOURNAL_TOPIC,
                0,
                &records,
                Some(writer),
            )),
            KReq::EndTxn {
                txn_id,
                pid,
                epoch,
                commit,
            } => KResp::Ended(k.end_txn(now, &txn_id, pid, epoch, commit)),
            KReq::LatestActivation => {
                KResp::Activation(k.latest_committed(JOURNAL_TOPIC, 0, b"activation"))
            }
            KReq::Join { member } => KResp::Group(Ok(k.join_group(now, LOCK_GROUP, &member))),
            KReq::Heartbeat { member } => KResp::Group(k.heartbeat(now, LOCK_GROUP, &member)),
            KReq::Leave { member } => {
                k.leave_group(now, LOCK_GROUP, &member);
                KResp::Left
            }
        };
        // Applied, but the reply may be lost.
        if self.rng.chance(self.reply_loss) {
            return;
        }
        let t = self.now + self.latency();
        self.at(
            t,
            Ev::FromKafka {
                node,
                gen,
                rid,
                resp,
            },
        );
    }

    fn on_response(&mut self, i: usize, kind: ReqKind, resp: KResp) {
        let mut inputs = VecDeque::new();
        match (kind, resp) {
            (ReqKind::Init, KResp::Pid(pid, epoch)) => {
                let h = &mut self.nodes[i];
                if h.j != JState::Init {
                    return;
                }
                h.pid = pid;
                h.epoch = epoch;
                h.seq = 0;
                h.j = JState::EndOffset;
                h.attempts = 0;
                self.request(i, ReqKind::EndOffset, KReq::EndOffset);
            }
            (ReqKind::EndOffset, KResp::End(end)) => {
                if self.nodes[i].j != JState::EndOffset {
                    return;
                }
                self.nodes[i].j = JState::Loading { offset: 0, end };
                self.nodes[i].attempts = 0;
                self.fetch_next(i, &mut inputs);
            }
            (ReqKind::Fetch, KResp::Fetched(f)) => {
                let JState::Loading { end, .. } = self.nodes[i].j else {
                    return;
                };
                let mut entries = Vec::with_capacity(f.records.len());
                for r in &f.records {
                    match self.decoded.get(r.offset, &r.key, r.value.as_deref()) {
                        Ok(e) => entries.push(e),
                        Err(e) => {
                            self.nodes[i].j = JState::Closed;
                            inputs.push_back(Input::Journal(JournalEvent::OpenFailed {
                                reason: format!("offset {}: {e}", r.offset),
                            }));
                            return self.feed_all(i, inputs);
                        }
                    }
                }
                if !entries.is_empty() {
                    inputs.push_back(Input::Journal(JournalEvent::Loaded { entries }));
                }
                self.nodes[i].j = JState::Loading {
                    offset: f.next_offset,
                    end,
                };
                self.nodes[i].attempts = 0;
                self.fetch_next(i, &mut inputs);
            }
            (ReqKind::Produce, KResp::Produced(r)) => {
                if self.nodes[i].j != JState::Open
                    || self.nodes[i].txn.as_ref().is_none_or(|t| t.committing)
                {
                    return;
                }
                match r {
                    Ok(_) => {
                        let bug = self.cfg.planted_bug
                            == Some(PlantedBug::Driver(DriverBug::AckBeforeCommit));
                        let h = &mut self.nodes[i];
                        let t = h.txn.as_mut().expect("txn");
                        t.committing = true;
                        t.attempts = 0;
                        if bug {
                            t.acked_early = true;
                            for tk in t.tickets.clone() {
                                inputs.push_back(Input::Journal(JournalEvent::Durable {
                                    ticket: tk,
                                }));
                            }
                        }
                        let req = KReq::EndTxn {
                            txn_id: h.txn_id.clone(),
                            pid: h.pid,
                            epoch: h.epoch,
                            commit: true,
                        };
                        self.request(i, ReqKind::EndTxn, req);
                    }
                    Err(KafkaError::ProducerFenced { .. }) => self.journal_fenced(i),
                    Err(e) => self.journal_failed(i, e.to_string(), &mut inputs),
                }
            }
            (ReqKind::EndTxn, KResp::Ended(r)) => {
                if self.nodes[i].j != JState::Open || self.nodes[i].txn.is_none() {
                    return;
                }
                match r {
                    Ok(()) => {
                        let t = self.nodes[i].txn.take().expect("txn");
                        if !t.acked_early {
                            for tk in t.tickets {
                                inputs.push_back(Input::Journal(JournalEvent::Durable {
                                    ticket: tk,
                                }));
                            }
                        }
                        self.pump_journal(i, &mut inputs);
                    }
                    Err(KafkaError::ProducerFenced { .. }) => self.journal_fenced(i),
                    Err(e) => self.journal_failed(i, e.to_string(), &mut inputs),
                }
            }
            (ReqKind::Activation, KResp::Activation(v)) => {
                // Which live fenced us, for the log line; then step down.
                let by_epoch =
                    v.as_deref()
                        .and_then(|v| match decode_entry(b"activation", Some(v)) {
                            Ok(Entry::Put(halyard_core::journal::Record::Activation {
                                epoch,
                                ..
                            })) => Some(epoch),
                            _ => None,
                        });
                self.deliver_fenced(i, by_epoch, &mut inputs);
            }
            (ReqKind::Join, KResp::Group(Ok(s))) | (ReqKind::Heartbeat, KResp::Group(Ok(s))) => {
                let h = &mut self.nodes[i];
                if !h.want_lock {
                    return;
                }
                h.joining = false;
                h.member = true;
                h.last_ok = self.now;
                self.group_status(i, s, &mut inputs);
            }
            (ReqKind::Join, KResp::Group(Err(_))) | (ReqKind::Heartbeat, KResp::Group(Err(_))) => {
                let h = &mut self.nodes[i];
                h.member = false;
                if h.held {
                    h.held = false;
                    inputs.push_back(Input::Lock(LockEvent::Lost {
                        reason: "expelled from the lock group (session expired)".into(),
                    }));
                }
                if h.want_lock {
                    self.join(i);
                }
            }
            _ => {}
        }
        self.feed_all(i, inputs);
    }

    fn on_timeout(&mut self, i: usize, kind: ReqKind) {
        let mut inputs = VecDeque::new();
        let attempts = {
            let h = &mut self.nodes[i];
            h.attempts += 1;
            h.attempts
        };
        match kind {
            ReqKind::Init | ReqKind::EndOffset | ReqKind::Fetch => {
                if attempts > ATTEMPTS_MAX {
                    self.nodes[i].j = JState::Closed;
                    inputs.push_back(Input::Journal(JournalEvent::OpenFailed {
                        reason: "Kafka did not answer while opening the journal".into(),
                    }));
                } else {
                    match self.nodes[i].j.clone() {
                        JState::Init => {
                            let txn_id = self.nodes[i].txn_id.clone();
                            self.request(i, ReqKind::Init, KReq::InitPid { txn_id });
                        }
                        JState::EndOffset => self.request(i, ReqKind::EndOffset, KReq::EndOffset),
                        JState::Loading { .. } => self.fetch_next(i, &mut inputs),
                        _ => {}
                    }
                }
            }
            ReqKind::Produce | ReqKind::EndTxn => {
                let Some(t) = self.nodes[i].txn.as_mut() else {
                    return;
                };
                t.attempts += 1;
                if t.attempts > ATTEMPTS_MAX {
                    // Its fate is unknown: the node must step down and reload.
                    self.journal_failed(
                        i,
                        "Kafka did not confirm the transaction".into(),
                        &mut inputs,
                    );
                } else {
                    self.send_txn_step(i);
                }
            }
            ReqKind::Activation => self.deliver_fenced(i, None, &mut inputs),
            ReqKind::Join | ReqKind::Heartbeat => {
                self.nodes[i].joining = false;
            }
        }
        self.feed_all(i, inputs);
    }

    fn feed_all(&mut self, i: usize, inputs: VecDeque<Input>) {
        for input in inputs {
            self.feed(i, input);
        }
    }

    fn fetch_next(&mut self, i: usize, inputs: &mut VecDeque<Input>) {
        let JState::Loading { offset, end } = self.nodes[i].j else {
            return;
        };
        if offset >= end {
            self.nodes[i].j = JState::Open;
            inputs.push_back(Input::Journal(JournalEvent::Ready));
            self.pump_journal(i, inputs);
        } else {
            self.request(i, ReqKind::Fetch, KReq::Fetch { offset });
        }
    }

    /// Starts a transaction with every append waiting (group commit).
    fn pump_journal(&mut self, i: usize, _inputs: &mut VecDeque<Input>) {
        let epoch_core = self.nodes[i].node.as_ref().map_or(0, Node::epoch);
        let h = &mut self.nodes[i];
        if h.j != JState::Open || h.txn.is_some() || h.queue.is_empty() {
            return;
        }
        let mut tickets = Vec::new();
        let mut records = Vec::new();
        while tickets.len() < TXN_BATCHES_MAX {
            let Some((t, entries)) = h.queue.pop_front() else {
                break;
            };
            tickets.push(t);
            for e in &entries {
                let (k, v) = encode_entry(e);
                records.push((k, v));
            }
        }
        let seq = h.seq;
        h.seq += 1;
        h.txn = Some(Txn {
            tickets,
            records: std::sync::Arc::new(records),
            seq,
            committing: false,
            attempts: 0,
            acked_early: false,
        });
        let _ = epoch_core;
        self.send_txn_step(i);
    }

    fn send_txn_step(&mut self, i: usize) {
        let epoch_core = self.nodes[i].node.as_ref().map_or(0, Node::epoch);
        let h = &self.nodes[i];
        let Some(t) = h.txn.as_ref() else { return };
        let req = if t.committing {
            (
                ReqKind::EndTxn,
                KReq::EndTxn {
                    txn_id: h.txn_id.clone(),
                    pid: h.pid,
                    epoch: h.epoch,
                    commit: true,
                },
            )
        } else {
            (
                ReqKind::Produce,
                KReq::Produce {
                    txn_id: h.txn_id.clone(),
                    pid: h.pid,
                    epoch: h.epoch,
                    seq: t.seq,
                    records: t.records.clone(),
                    writer: Writer {
                        node: h.name.clone(),
                        epoch: epoch_core,
                    },
                },
            )
        };
        self.request(i, req.0, req.1);
    }

    fn journal_fenced(&mut self, i: usize) {
        // Find out which live fenced us (for "fenced by epoch N"), then tell the node.
        self.request(i, ReqKind::Activation, KReq::LatestActivation);
    }

    fn deliver_fenced(&mut self, i: usize, by_epoch: Option<u32>, inputs: &mut VecDeque<Input>) {
        let h = &mut self.nodes[i];
        // A transaction acknowledged early (planted bug) has no ticket left
        // to answer: the next unanswered one is in the queue.
        let ticket = h
            .txn
            .as_ref()
            .filter(|t| !t.acked_early)
            .and_then(|t| t.tickets.first().copied());
        let ticket = ticket.or_else(|| h.queue.front().map(|(t, _)| *t));
        h.txn = None;
        h.queue.clear();
        h.j = JState::Closed;
        if let Some(ticket) = ticket {
            inputs.push_back(Input::Journal(JournalEvent::Fenced { ticket, by_epoch }));
        }
    }

    fn journal_failed(&mut self, i: usize, reason: String, inputs: &mut VecDeque<Input>) {
        let h = &mut self.nodes[i];
        // A transaction acknowledged early (planted bug) has no ticket left
        // to answer: the next unanswered one is in the queue.
        let ticket = h
            .txn
            .as_ref()
            .filter(|t| !t.acked_early)
            .and_then(|t| t.tickets.first().copied());
        let ticket = ticket.or_else(|| h.queue.front().map(|(t, _)| *t));
        h.txn = None;
        h.queue.clear();
        h.j = JState::Closed;
        if let Some(ticket) = ticket {
            inputs.push_back(Input::Journal(JournalEvent::Failed { ticket, reason }));
        }
    }

    // ----------------------------------------------------------- the lock

    fn join(&mut self, i: usize) {
        let h = &mut self.nodes[i];
        if !h.want_lock || h.joining || h.member {
            return;
        }
        h.joining = true;
        let member = h.member_name();
        self.request(i, ReqKind::Join, KReq::Join { member });
    }

    fn ensure_heartbeats(&mut self, i: usize) {
        if !self.nodes[i].hb_running {
            self.nodes[i].hb_running = true;
            let gen = self.nodes[i].gen;
            let t = self.now + self.cfg.lock_heartbeat_ms;
            self.at(t, Ev::Heartbeat { node: i, gen });
        }
    }

    fn heartbeat_tick(&mut self, i: usize) {
        let session = self.cfg.kafka.session_timeout_ms;
        let mut inputs = VecDeque::new();
        let h = &mut self.nodes[i];
        if !h.want_lock && !h.held {
            h.hb_running = false;
            return;
        }
        // The client side of the session timeout: no answer for a whole
        // session means the group has moved on without us.
        if h.held && self.now > h.last_ok + session {
            h.held = false;
            h.member = false;
            inputs.push_back(Input::Lock(LockEvent::Lost {
                reason: format!("no heartbeat answer for {session} ms"),
            }));
        }
        if h.member {
            let member = h.member_name();
            self.request(i, ReqKind::Heartbeat, KReq::Heartbeat { member });
        } else {
            self.join(i);
        }
        let gen = self.nodes[i].gen;
        let t = self.now + self.cfg.lock_heartbeat_ms;
        self.at(t, Ev::Heartbeat { node: i, gen });
        self.feed_all(i, inputs);
    }

    fn group_status(&mut self, i: usize, s: GroupStatus, inputs: &mut VecDeque<Input>) {
        let failback = self.cfg.allow_failback;
        let h = &mut self.nodes[i];
        let me = h.member_name();
        let mine = s.holder.as_deref() == Some(me.as_str());
        if mine && !h.held {
            h.held = true;
            inputs.push_back(Input::Lock(LockEvent::Acquired));
        } else if !mine && h.held {
            h.held = false;
            inputs.push_back(Input::Lock(LockEvent::Lost {
                reason: "lock partition reassigned".into(),
            }));
        } else if !mine && !h.announced {
            h.announced = true;
            inputs.push_back(Input::Lock(LockEvent::Standby));
        }
        if mine
            && failback
            && h.role == Role::Backup
            && !h.handback_sent
            && s.members.iter().any(|m| m.starts_with("0-"))
        {
            h.handback_sent = true;
            inputs.push_back(Input::Lock(LockEvent::HandBack));
        }
    }

    // ------------------------------------------------------------ clients

    fn client_actions(&mut self, c: usize, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Timer(t) => self.at(t, Ev::ClientTimer { client: c }),
                Action::Trace(s) => {
                    let name = self.clients[c].name.clone();
                    self.log(&name, s);
                }
                Action::Detail(s) => {
                    let now = self.now;
                    self.trace.detail(now, &self.clients[c].name, &s);
                }
                Action::Connect { node } => self.connect(c, node),
                Action::Send(bytes) => {
                    let Some(id) = self.client_conn[c] else {
                        continue;
                    };
                    let lat = self.latency();
                    let Some(sc) = self.conns.get_mut(&id).filter(|sc| sc.client_open) else {
                        continue;
                    };
                    let t = (self.now + lat).max(sc.to_node_at);
                    sc.to_node_at = t;
                    self.at(t, Ev::ToNode { conn: id, bytes });
                }
                Action::Close => {
                    if let Some(id) = self.client_conn[c].take() {
                        if let Some(sc) = self.conns.get_mut(&id).filter(|sc| sc.client_open) {
                            sc.client_open = false;
                            let t = sc.to_node_at.max(self.now) + 1;
                            self.at(t, Ev::CloseToNode { conn: id });
                        }
                    }
                }
            }
        }
    }

    fn connect(&mut self, c: usize, node: usize) {
        let id = self.next_conn;
        self.next_conn += 1;
        let lat = self.latency();
        let reachable = self.nodes[node].node.is_some()
            && self.nodes[node].accepting
            && !self.client_cut.contains(&(c, node));
        let gen = self.nodes[node].gen;
        self.client_conn[c] = Some(id);
        self.conns.insert(
            id,
            SimConn {
                client: c,
                node,
                gen,
                node_open: reachable,
                client_open: true,
                to_node_at: self.now,
                to_client_at: self.now,
            },
        );
        if !reachable {
            self.at(self.now + lat, Ev::CloseToClient { conn: id });
            return;
        }
        self.nodes[node].conns.insert(id);
        let acts = self.clients[c].on_open();
        self.feed(node, Input::Conn(ConnEvent::Opened { conn: ConnId(id) }));
        self.client_actions(c, acts);
    }

    // ------------------------------------------------------------- faults

    fn count_fault(&mut self, kind: &'static str) {
        *self.faults.by_kind.entry(kind).or_insert(0) += 1;
    }

    fn live_node(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|h| h.node.as_ref().is_some_and(Node::is_live))
    }

    fn inject_fault(&mut self) {
        if self.now >= self.cfg.fault_until_ms {
            return;
        }
        let n = self.nodes.len();
        let target = match (self.live_node(), self.fault_rng.chance(0.6)) {
            (Some(l), true) => l,
            _ => self.fault_rng.range(0, n as u64 - 1) as usize,
        };
        let name = self.nodes[target].name.clone();
        match self.fault_rng.range(0, 9) {
            0..=2 => {
                if self.nodes[target].node.is_some() {
                    self.count_fault("crash");
                    self.crash(target);
                    let t = self.now + self.fault_rng.range(500, 8_000);
                    self.at(t, Ev::Restart { node: target });
                }
            }
            3..=4 => {
                let d = self.fault_rng.range(500, 10_000);
                self.count_fault("kafka-partition");
                self.kafka_cut.insert(target);
                self.log("fault", format!("partition {name} from Kafka for {d} ms"));
                self.at(self.now + d, Ev::HealKafka { node: target });
            }
            5..=6 => {
                if self.nodes[target].node.is_some() && self.nodes[target].paused_until.is_none() {
                    let d = self.fault_rng.range(500, 8_000);
                    self.count_fault("pause");
                    self.nodes[target].paused_until = Some(self.now + d);
                    self.log("fault", format!("pause {name} for {d} ms"));
                }
            }
            7 => {
                let c = self.fault_rng.range(0, self.clients.len() as u64 - 1) as usize;
                let d = self.fault_rng.range(200, 5_000);
                self.count_fault("client-partition");
                self.client_cut.insert((c, target));
                let cname = self.clients[c].name.clone();
                self.log(
                    "fault",
                    format!("partition client {cname} from {name} for {d} ms"),
                );
                let ids: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, sc)| {
                        sc.client == c && sc.node == target && (sc.client_open || sc.node_open)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    let t = self.now + 1;
                    self.at(t, Ev::CloseToClient { conn: id });
                    self.at(t, Ev::CloseToNode { conn: id });
                }
                self.at(
                    self.now + d,
                    Ev::HealClient {
                        client: c,
                        node: target,
                    },
                );
            }
            _ => {
                let d = self.fault_rng.range(500, 5_000);
                self.count_fault("kafka-reply-loss");
                self.reply_loss = 0.3;
                self.log("fault", format!("Kafka loses 30% of replies for {d} ms"));
                self.at(self.now + d, Ev::ReplyLossEnd);
            }
        }
        let t = self.now + self.fault_rng.range(500, 4_000);
        self.at(t, Ev::Fault);
    }

    /// Ends every fault: heal partitions and restart crashed nodes.
    pub fn heal(&mut self) {
        self.kafka_cut.clear();
        self.client_cut.clear();
        self.reply_loss = 0.0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                self.boot(i);
            }
        }
        self.log("fault", "all faults healed");
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|h| h.name.clone()).collect()
    }

    pub fn live_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|h| h.node.as_ref().is_some_and(Node::is_live))
            .count()
    }

    /// Lets topic producers start once every durable subscription exists.
    pub fn release_topic_producers(&mut self) {
        let ready = self
            .clients
            .iter()
            .filter(|c| {
                matches!(
                    &c.kind,
                    Kind::Consumer {
                        durable: Some(_),
                        ..
                    }
                )
            })
            .all(Client::subscribed_once);
        for c in &mut self.clients {
            c.may_start = ready;
        }
    }
}
