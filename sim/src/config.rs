//! What a simulation run looks like, derived from its seed.

use crate::kafka::KafkaConfig;
use crate::rng::Rng;

/// Deliberate bugs in the simulated drivers (the core has its own, behind
/// the `planted-bugs` feature) that the checker must catch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DriverBug {
    /// Each activation uses a fresh transactional id, so nothing fences a zombie live.
    SkipFencing,
    /// Report a batch durable once produced, before the transaction commits.
    AckBeforeCommit,
    /// Write the Kafka bridge's records outside the journal transaction
    /// (as a plain producer would), so an aborted batch leaves them behind.
    BridgeOutsideTransaction,
    /// Fenced preemption without the fencing: a journal open that follows a
    /// preemption uses a fresh transactional id (as `SkipFencing`, but only
    /// then), so the suspected live, if it still runs, keeps writing.
    PreemptWithoutFencing,
    /// The peer watch suspects a live peer after less than one heartbeat of
    /// silence (a unit or configuration slip), so every live is suspected
    /// between two status lines and the backups take turns forever.
    SuspectWithinHeartbeat,
    /// The peer link's driver drops what a node hears of a newer live peer
    /// (`PeerLive`), so a live node replaced by a preemption stays live
    /// until a write of its is fenced.
    IgnorePeerLive,
}

/// A planted bug, in the core or in a driver.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    Driver(DriverBug),
    #[cfg(feature = "planted-bugs")]
    Core(halyard_core::node::PlantedBug),
}

/// The share of AMQP clients a seed gets unless told otherwise: with about
/// a dozen clients per run, most seeds have AMQP producers and consumers,
/// many with messages crossing between STOMP and AMQP.
pub const AMQP_SHARE_DEFAULT: f64 = 0.4;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub allow_failback: bool,
    /// Plain producers to queues.
    pub queue_producers: usize,
    /// Producers that send in transactions.
    pub tx_producers: usize,
    /// Producers to the topic with durable subscribers.
    pub topic_producers: usize,
    pub messages_per_producer: u64,
    /// Competing consumers on the queue.
    pub queue_consumers: usize,
    pub durable_subscribers: usize,
    /// Producers that put duplicate-detection ids on sends.
    pub duplicate_ids: bool,
    /// The chance that a client speaks AMQP 1.0 rather than STOMP (0 for
    /// STOMP only, 1 for AMQP only).
    pub amqp_share: f64,
    /// Faults are injected from 1 s until this time.
    pub fault_until_ms: u64,
    /// The run fails as stuck if it has not finished by then.
    pub max_time_ms: u64,
    /// Inject faults at all (off for a clean baseline run).
    pub faults: bool,
    pub kafka: KafkaConfig,
    pub lock_heartbeat_ms: u64,
    pub request_timeout_ms: u64,
    pub planted_bug: Option<PlantedBug>,
    /// An operator purges the queue `purged` (filled by its own producer)
    /// through the management API, at random nodes, all run long.
    pub operator: bool,
    /// The nodes bridge `kafka.<topic>` addresses to Kafka: the topic
    /// producers send to a bridged address, and an outside Kafka producer
    /// feeds a topic that durable subscribers read through the bridge.
    pub bridge: bool,
    /// Records the outside Kafka producer writes (with `bridge`).
    pub feed_records: u64,
    /// Durable subscribers of the fed address.
    pub feed_subscribers: usize,
    /// The nodes have users (`security_check::security`): every client logs
    /// in, and an intruder whose user may not send tries to.
    pub security: bool,
    /// A fault fills a node's disk above `--max-disk-usage` for a while
    /// (see `disk_check`).
    pub disk_faults: bool,
    /// The nodes' `--max-memory-bytes` (0: none): small in some seeds, so
    /// that producers are held back until consumers catch up.
    pub memory_max_bytes: u64,
    /// With a memory limit: the nodes page message bodies out to the
    /// journal (the `page` policy with a journal driver that reads them
    /// back) instead of holding producers back.
    pub paging: bool,
    /// Set by `only_base_workload`: faults drawn as at commit 70d8f86 (no
    /// slot for a full disk), the topic producers on `/topic/events`.
    pub base_workload: bool,
    /// Fenced preemption: the nodes send each other their status every
    /// `peer_heartbeat_ms`, and a backup that heard a peer live suspects it
    /// when its link closes or stays silent for `peer_suspect_ms`, then goes
    /// live without the lock, fencing it. The faults also cut nodes off from
    /// each other only, and slow the peer links down.
    pub preemption: bool,
    pub peer_heartbeat_ms: u64,
    pub peer_suspect_ms: u64,
}

/// Mixed into the seed for the preemption draw, which takes nothing from
/// the scenario's generator: seeds without preemption are what they were
/// before it existed.
const PREEMPTION_SEED: u64 = 0x9E3E_3971_0F3E_0016;

impl SimConfig {
    /// The configuration a seed stands for: mostly the standard scenario
    /// (3 nodes, a dozen clients, over 1,000 messages, faults for 60
    /// virtual seconds), sometimes 2 or 4 nodes.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = Rng::new(seed ^ 0x5EED_C0F1_6000_0000);
        let nodes = match r.range(0, 19) {
            0..=2 => 2,
            3..=5 => 4,
            _ => 3,
        };
        let queue_producers = r.range(2, 3) as usize;
        let tx_producers = r.range(0, 1) as usize;
        let topic_producers = r.range(0, 1) as usize;
        // At least 1,000 messages in all, spread over the producers.
        let producers = (queue_producers + tx_producers + topic_producers) as u64;
        let messages_per_producer = 1_000_u64.div_ceil(producers) + r.range(0, 50);
        let mut c = SimConfig {
            seed,
            nodes,
            allow_failback: r.chance(0.5),
            queue_producers,
            tx_producers,
            topic_producers,
            messages_per_producer,
            queue_consumers: r.range(1, 3) as usize,
            durable_subscribers: r.range(1, 2) as usize,
            duplicate_ids: r.chance(0.5),
            amqp_share: AMQP_SHARE_DEFAULT,
            fault_until_ms: 60_000,
            max_time_ms: 0,
            faults: true,
            kafka: KafkaConfig {
                session_timeout_ms: 3_000,
                transaction_timeout_ms: 15_000,
                tombstone_retention_ms: r.range(1_000, 10_000),
            },
            lock_heartbeat_ms: 500,
            request_timeout_ms: 1_500,
            planted_bug: None,
            operator: true,
            bridge: true,
            feed_records: 0,
            feed_subscribers: 0,
            security: true,
            disk_faults: true,
            memory_max_bytes: 0,
            paging: false,
            base_workload: false,
            preemption: Rng::new(seed ^ PREEMPTION_SEED).chance(0.5),
            peer_heartbeat_ms: 100,
            peer_suspect_ms: 500,
        };
        // Drawn after everything above, so the rest of a seed's scenario
        // is what it was before the bridge existed.
        c.feed_records = r.range(100, 300);
        c.feed_subscribers = r.range(1, 2) as usize;
        if r.chance(0.3) {
            // Room for about 25 to 75 of the workload's small messages,
            // each counted with what a message costs in memory
            // (`MESSAGE_OVERHEAD_BYTES`): small enough to fill, large
            // enough for the messages parked in queues nobody drains.
            c.memory_max_bytes = r.range(80_000, 240_000);
        }
        // Drawn last, for the same reason.
        c.paging = c.memory_max_bytes > 0 && r.chance(0.6);
        // Two minutes after the faults stop is plenty to drain everything.
        c.max_time_ms = c.fault_until_ms + 120_000;
        c
    }

    /// Only the workload the simulator had at commit 70d8f86, for issue
    /// 10's like-for-like speed comparison with that build: no operator,
    /// Kafka bridge (the topic producers send to `/topic/events` again),
    /// users, disk faults, memory limit or preemption, and faults drawn as
    /// then; runs end as then too (without the liveness rule). With
    /// `amqp_share` 0 the clients, messages and faults are that commit's.
    pub fn only_base_workload(&mut self) {
        self.operator = false;
        self.bridge = false;
        self.feed_records = 0;
        self.feed_subscribers = 0;
        self.security = false;
        self.disk_faults = false;
        self.memory_max_bytes = 0;
        self.paging = false;
        self.preemption = false;
        self.base_workload = true;
    }
}
