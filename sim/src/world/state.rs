//! The world: everything one simulation holds (Kafka, nodes, network,
//! clients, faults, the event queue) and how it is built.

use std::collections::BTreeMap;

use halyard_core::node::Node;
use halyard_core::Millis;

use super::decoded::DecodedRecords;
use super::effects::Effect;
use super::events::{Event, EventQueue};
use super::feed_state::Feed;
use super::kafka_requests::JOURNAL_TOPIC;
use super::network::{self, Network};
use super::node_host::NodeHost;
use super::operator_log::Operator;
use super::peer_links::PeerLinks;
use crate::client::Client;
use crate::config::SimConfig;
use crate::kafka::KafkaModel;
use crate::liveness_check::{self, LivenessWatch};
use crate::rng::Rng;
use crate::trace::Trace;
use halyard_core::bridge::{BridgeConfig, BridgeMode, RouteSettings, DEFAULT_PREFIX};

/// Fault counters for the summary.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultStats {
    pub(crate) by_kind: BTreeMap<&'static str, u64>,
}

pub(crate) struct World {
    pub(super) cfg: SimConfig,
    pub(crate) now: Millis,
    /// Latencies, lost replies and the clients' own generators.
    pub(super) rng: Rng,
    /// Which fault strikes when, and compaction: apart from `rng`, so
    /// traffic does not shift the faults.
    pub(super) fault_rng: Rng,
    pub(super) events: EventQueue,
    pub(crate) kafka: KafkaModel,
    pub(super) nodes: Vec<NodeHost>,
    pub(super) network: Network,
    pub(super) next_request_id: u64,
    pub(crate) clients: Vec<Client>,
    pub(crate) trace: Trace,
    pub(crate) faults: FaultStats,
    pub(crate) events_processed: u64,
    pub(super) decoded: DecodedRecords,
    /// An empty buffer for a client step's actions, kept to save allocations.
    pub(super) client_out: Vec<crate::client::Action>,
    /// An empty buffer for drivers' effects, kept so they cost no allocation.
    pub(super) effects: Vec<Effect>,
    /// The first node invariant found broken (checked in debug builds only).
    pub(crate) broken_invariant: Option<String>,
    /// How many times node invariants were checked.
    pub(crate) invariant_checks: u64,
    /// Management requests and their answers.
    pub(crate) operator: Operator,
    /// The nodes' Kafka bridge (`None`: off).
    pub(super) bridge_cfg: Option<BridgeConfig>,
    /// The outside Kafka producer.
    pub(crate) feed: Feed,
    /// The nodes' users and permissions (`None`: anonymous clients).
    pub(super) security: Option<std::sync::Arc<halyard_core::security::Security>>,
    /// The disk rule's bookkeeping (see `disk_check`).
    pub(crate) disk: crate::disk_check::DiskWatch,
    /// The nodes' peer links and watches (fenced preemption).
    pub(super) peers: PeerLinks,
    /// The liveness rule's bookkeeping (see `liveness_check`).
    pub(crate) liveness: LivenessWatch,
    /// Password checks already answered, by (hash, password): a check is a
    /// pure function and costs about 200,000 instructions, and a seed's
    /// clients log in again with the same few pairs after every failover.
    /// Ordered, like the rest of the world, so nothing hangs on a hasher's seed.
    pub(super) password_checks: BTreeMap<(String, Vec<u8>), bool>,
}

impl World {
    pub(crate) fn new(cfg: SimConfig, trace: Trace) -> World {
        let mut rng = Rng::new(cfg.seed);
        let fault_rng = rng.fork();
        let mut kafka = KafkaModel::new(cfg.kafka.clone());
        kafka.create_topic(JOURNAL_TOPIC, 1);
        let nodes: Vec<NodeHost> = (0..cfg.nodes).map(|i| NodeHost::new(i, &cfg)).collect();
        let peers = PeerLinks::new(&cfg);
        let liveness = LivenessWatch::new(
            cfg.kafka.session_timeout_ms + liveness_check::SLACK_MS,
            nodes.iter().map(|n| n.name.clone()).collect(),
        );
        let mut w = World {
            cfg,
            now: 0,
            rng,
            fault_rng,
            events: EventQueue::default(),
            kafka,
            nodes,
            network: Network::new(),
            next_request_id: 1,
            clients: Vec::new(),
            trace,
            faults: FaultStats::default(),
            events_processed: 0,
            decoded: DecodedRecords::default(),
            client_out: Vec::new(),
            effects: Vec::new(),
            broken_invariant: None,
            invariant_checks: 0,
            operator: Operator::default(),
            bridge_cfg: None,
            feed: Feed::new(0, 0),
            security: None,
            disk: Default::default(),
            peers,
            liveness,
            password_checks: Default::default(),
        };
        if w.cfg.security {
            w.security = Some(std::sync::Arc::new(crate::security_check::security()));
        }
        if w.cfg.bridge {
            let mut b = BridgeConfig::new(
                DEFAULT_PREFIX.into(),
                RouteSettings::default(),
                Vec::new(),
                "sim".into(),
                BridgeMode::Transactional,
            )
            .expect("a valid bridge configuration");
            b.excluded_topics.push(JOURNAL_TOPIC.into());
            w.bridge_cfg = Some(b);
            w.feed = Feed::new(w.cfg.seed, w.cfg.feed_records);
        }
        if w.cfg.operator {
            w.operator = Operator::new(w.cfg.seed);
        }
        w.make_clients();
        w.disk = crate::disk_check::DiskWatch::new(&w.clients, w.nodes.len());
        w
    }

    /// Schedules `event` at `t` (or now, if `t` is past).
    pub(super) fn at(&mut self, t: Millis, event: Event) {
        self.events.push(t.max(self.now), event);
    }

    pub(super) fn latency(&mut self) -> Millis {
        network::latency(&mut self.rng)
    }

    pub(super) fn log(&mut self, who: &str, what: impl AsRef<str>) {
        self.trace.line(self.now, who, what.as_ref());
    }

    /// What fenced preemption did in this run.
    pub(crate) fn preemption_stats(&self) -> &super::peer_links::PreemptionStats {
        &self.peers.stats
    }

    /// Tells the liveness rule which nodes are live now.
    pub(super) fn note_live_nodes(&mut self) {
        let live = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, host)| host.node.as_ref().is_some_and(Node::is_live))
            .map(|(i, _)| i)
            .collect();
        self.liveness.changed(self.now, live);
    }

    pub(crate) fn live_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|host| host.node.as_ref().is_some_and(Node::is_live))
            .count()
    }
}

impl World {
    /// Paged messages every node's journal driver read back.
    pub(crate) fn paged_in(&self) -> u64 {
        self.nodes.iter().map(|n| n.journal.paged_in).sum()
    }
}
