//! The Kafka mirror lock's settings and names, and its group member: a
//! consumer in the group `halyard-mirror-lock-<lock-id>` on the one-partition
//! topic of the same name, polled by a thread of its own. The member that is
//! assigned partition 0 may acquire the lock (`mirror_held`).
//!
//! `cooperative-sticky` assignment, as the live/backup group lock
//! (`super::lock`): the holder keeps partition 0 while it stays in the group;
//! a member joining never moves it. Partition 0 moves when its holder leaves
//! the group (it released the lock, or its process ended and closed the
//! consumer) or when the group has not heard from it for the session timeout
//! (its process died or hung, or Kafka is out of its reach).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use super::config::KafkaConfig;
use super::mirror_error::KafkaMirrorLockError;
use super::topic::ensure_topic;

/// How long the group waits for a silent member before partition 0 moves,
/// when none is given (`halyard node` uses `KAFKA_SESSION_MS`, the same).
pub const MIRROR_SESSION_TIMEOUT_MS_DEFAULT: u64 = 6_000;
/// Bound on one Kafka call of the mirror lock (init, commit, a read).
const OPERATION_TIMEOUT_MS: u64 = 5_000;
/// Settings of the state topic: compacted, every record has one key.
const STATE_TOPIC_CONFIG: &[(&str, &str)] = &[("cleanup.policy", "compact")];
/// Longest lock id (it names topics, a group and a transactional id).
const LOCK_ID_BYTES_MAX: usize = 128;
/// Between two polls of the member's consumer.
const POLL: Duration = Duration::from_millis(100);

/// Where the lock lives and who asks for it.
#[derive(Clone, Debug)]
pub struct KafkaMirrorLockConfig {
    /// The bootstrap servers, extra client properties, the replication
    /// factor of the two topics, the bound on one operation.
    pub kafka: KafkaConfig,
    /// Names the group, the topics and the transactional id.
    pub lock_id: String,
    /// This broker's name (its client id, its name in an in-sync set).
    pub node: String,
    /// `session.timeout.ms` of the group member.
    pub session_timeout_ms: u64,
}

impl KafkaMirrorLockConfig {
    pub fn new(
        bootstrap: impl Into<String>,
        lock_id: impl Into<String>,
        node: impl Into<String>,
    ) -> KafkaMirrorLockConfig {
        let lock_id = lock_id.into();
        let mut kafka = KafkaConfig::new(bootstrap, format!("mirror-{lock_id}"));
        kafka.operation_timeout_ms = OPERATION_TIMEOUT_MS;
        KafkaMirrorLockConfig {
            kafka,
            lock_id,
            node: node.into(),
            session_timeout_ms: MIRROR_SESSION_TIMEOUT_MS_DEFAULT,
        }
    }

    pub fn with_session_timeout_ms(mut self, ms: u64) -> KafkaMirrorLockConfig {
        self.session_timeout_ms = ms;
        self
    }

    /// The consumer group; also the one-partition lock topic.
    pub fn group(&self) -> String {
        format!("halyard-mirror-lock-{}", self.lock_id)
    }

    /// The compacted one-partition topic of the epoch and the lock state.
    pub fn state_topic(&self) -> String {
        format!("halyard-mirror-state-{}", self.lock_id)
    }

    /// Fixed per lock: every holder's producer uses it, so each new holder
    /// fences the last.
    pub fn transactional_id(&self) -> String {
        format!("halyard-mirror-lock-{}", self.lock_id)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.kafka.timeout()
    }

    pub fn validate(&self) -> Result<(), KafkaMirrorLockError> {
        let invalid = |what, value: &str, reason| {
            Err(KafkaMirrorLockError::Invalid {
                what,
                value: value.to_string(),
                reason,
            })
        };
        let id = &self.lock_id;
        if id.is_empty() || id.len() > LOCK_ID_BYTES_MAX {
            return invalid("lock id", id, "use 1 to 128 bytes");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return invalid(
                "lock id",
                id,
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            );
        }
        let node = &self.node;
        if node.is_empty() || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("node name", node, "empty, or holds whitespace");
        }
        if self.kafka.bootstrap.trim().is_empty() {
            return invalid("bootstrap servers", &self.kafka.bootstrap, "empty");
        }
        if self.session_timeout_ms < 1_000 {
            return invalid(
                "session timeout",
                &format!("{} ms", self.session_timeout_ms),
                "below 1000 ms",
            );
        }
        Ok(())
    }
}

/// What the member knows of its place in the group.
#[derive(Clone, Debug, Default)]
pub(crate) struct Status {
    /// Partition 0 is assigned to this member.
    pub(crate) holds: bool,
    /// Counts the assignments of partition 0 to this member: a lock taken
    /// under one is lost once another began.
    pub(crate) generation: u64,
    /// A rebalance assigned this member its partitions (maybe none) once.
    pub(crate) rebalanced: bool,
    /// Why partition 0 was last taken away.
    pub(crate) taken: Option<String>,
    /// The last client error, and when.
    pub(crate) error: Option<(Instant, String)>,
    /// The member left the group (released, or its consumer ended).
    pub(crate) ended: Option<String>,
}

struct Shared {
    status: Mutex<Status>,
    stop: AtomicBool,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        // Poisoned only if a thread panicked holding it; nothing to add then.
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

struct MemberContext {
    shared: Arc<Shared>,
}

fn has_partition0(tpl: &TopicPartitionList) -> bool {
    tpl.elements().iter().any(|e| e.partition() == 0)
}

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        debug!(%error, reason, "Kafka mirror lock member");
        let line = format!("{error}: {reason}");
        self.shared
            .update(|s| s.error = Some((Instant::now(), line)));
    }
}

impl ConsumerContext for MemberContext {
    // Before the unassign: librdkafka clears the "assignment lost" flag
    // once the revocation is done.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if has_partition0(tpl) {
                let why = if consumer.assignment_lost() {
                    "the group session was lost (Kafka unreachable, or this broker too slow)"
                } else {
                    "partition 0 was revoked"
                };
                self.shared.update(|s| {
                    s.holds = false;
                    s.taken = Some(why.to_string());
                });
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) if has_partition0(tpl) => self.shared.update(|s| {
                s.holds = true;
                s.generation += 1;
                s.rebalanced = true;
            }),
            Rebalance::Assign(_) => self.shared.update(|s| s.rebalanced = true),
            Rebalance::Error(e) => {
                let line = format!("rebalance failed: {e}");
                self.shared
                    .update(|s| s.error = Some((Instant::now(), line)));
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A member of the lock group, polled by its own thread until it leaves.
pub(crate) struct Member {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    group: String,
}

impl Member {
    /// Creates both topics unless they exist and joins the group (blocking:
    /// run it off the async runtime).
    pub(crate) fn join(config: &KafkaMirrorLockConfig) -> Result<Member, KafkaMirrorLockError> {
        let group = config.group();
        ensure_topic(&config.kafka, &group, 1, &[])?;
        ensure_topic(&config.kafka, &config.state_topic(), 1, STATE_TOPIC_CONFIG)?;
        let shared = Arc::new(Shared {
            status: Mutex::new(Status::default()),
            stop: AtomicBool::new(false),
        });
        let heartbeat_ms = (config.session_timeout_ms / 5).max(100);
        let consumer: BaseConsumer<MemberContext> = config
            .kafka
            .client()
            .set("client.id", format!("halyard-mirror-{}", config.node))
            .set("group.id", &group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(MemberContext {
                shared: shared.clone(),
            })
            .map_err(|source| KafkaMirrorLockError::Client {
                what: "group member",
                bootstrap: config.kafka.bootstrap.clone(),
                source,
            })?;
        consumer
            .subscribe(&[&group])
            .map_err(|source| KafkaMirrorLockError::Join {
                group: group.clone(),
                source,
            })?;
        let poller = shared.clone();
        let thread = std::thread::Builder::new()
            .name("halyard-mirror-lock".into())
            .spawn(move || serve(consumer, poller))
            .map_err(|e| KafkaMirrorLockError::Join {
                group: group.clone(),
                source: KafkaError::Subscription(format!("cannot start its thread: {e}")),
            })?;
        info!(node = %config.node, %group, "joined the Kafka mirror lock group {group}");
        Ok(Member {
            shared,
            thread: Mutex::new(Some(thread)),
            group,
        })
    }

    pub(crate) fn status(&self) -> Status {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Status {
                ended: Some("the member's status is poisoned".to_string()),
                ..Status::default()
            })
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// Whether partition 0 is still assigned under `generation`; why not.
    pub(crate) fn still_holds(&self, generation: u64) -> Result<(), String> {
        let s = self.status();
        if let Some(why) = s.ended {
            return Err(format!("left the group {}: {why}", self.group));
        }
        if !s.holds || s.generation != generation {
            let why = s.taken.unwrap_or_else(|| "assigned again".to_string());
            return Err(format!("partition 0 of {} moved: {why}", self.group));
        }
        Ok(())
    }

    /// Leaves the group at once (partition 0 moves now) and waits for the
    /// thread (blocking).
    pub(crate) fn leave(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            if t.join().is_err() {
                warn!(group = %self.group, "the Kafka mirror lock member's thread panicked");
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // The thread leaves the group on its own.
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// The member's thread: serves heartbeats' outcomes and the rebalance
/// callbacks until told to stop, then leaves the group.
fn serve(consumer: BaseConsumer<MemberContext>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        // Nobody writes to the lock topic: a message is not expected.
        if let Some(Err(e)) = consumer.poll(POLL) {
            debug!(error = %e, "Kafka mirror lock member");
        }
    }
    consumer.unsubscribe();
    // Closing the consumer (drop) leaves the group: partition 0 moves now.
    drop(consumer);
    shared.update(|s| {
        s.holds = false;
        s.ended = Some("left the group".to_string());
    });
}
