//! The live lock as Kafka consumer-group membership: every node joins the
//! lock group on a one-partition lock topic; the member assigned partition 0
//! is live, the others are backups.
//!
//! - `cooperative-sticky` assignment: the holder keeps partition 0 while it
//!   stays in the group (a backup joining never moves it).
//! - Losing partition 0 (revoked, or the session timed out because Kafka was
//!   unreachable) is `LockEvent::Lost`: the node steps down. Safety does not
//!   depend on how quickly this is noticed: the new live fences the journal.
//! - Failback: a live backup checks the group's members every second; when a
//!   member whose client id marks it as the primary is present (and failback
//!   is allowed) it reports `LockEvent::HandBack`, drains, and leaves the
//!   group, so partition 0 moves on. Member ids start with the client id and
//!   the primary's sorts first, so a free partition goes to it.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use halyard_core::ha::Role;
use halyard_core::node::{Input, LockEvent, LockRequest};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::config::KafkaConfig;
use super::error::LockError;
use super::topic::ensure_topic;
use crate::lock::{LockHandle, LockMsg};

#[derive(Clone, Debug)]
pub struct KafkaLockConfig {
    pub kafka: KafkaConfig,
    pub role: Role,
    pub allow_failback: bool,
    pub node_id: String,
    /// `session.timeout.ms`: how long the group waits for a silent member.
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
}

impl KafkaLockConfig {
    /// The member's client id: the primary's sorts first.
    fn client_id(&self) -> String {
        let rank = if self.role == Role::Primary {
            "0-primary"
        } else {
            "1-backup"
        };
        format!("halyard-{}-{rank}-{}", self.kafka.cluster_id, self.node_id)
    }
}

/// What the rebalance callbacks saw, drained by the lock thread.
#[derive(Debug)]
enum Seen {
    Assigned,
    AssignedOther,
    Revoked { lost: bool },
    Error(Trouble),
}

/// An error the callbacks saw; the node hears it as `LockEvent::Unavailable`.
#[derive(Debug, thiserror::Error)]
enum Trouble {
    /// librdkafka reported an error (usually: Kafka unreachable).
    #[error("{error}: {reason}")]
    Client { error: KafkaError, reason: String },
    #[error("rebalance failed: {0}")]
    Rebalance(KafkaError),
}

struct LockContext {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl LockContext {
    fn push(&self, s: Seen) {
        // Poisoned only if a thread panicked holding it; nothing to add then.
        if let Ok(mut v) = self.seen.lock() {
            v.push(s);
        }
    }
}

fn has_partition0(tpl: &TopicPartitionList) -> bool {
    tpl.elements().iter().any(|e| e.partition() == 0)
}

impl ClientContext for LockContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.push(Seen::Error(Trouble::Client {
            error,
            reason: reason.to_string(),
        }));
    }
}

impl ConsumerContext for LockContext {
    // Revocations are seen before the unassign: librdkafka clears the
    // "assignment lost" flag once the revocation is done.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if has_partition0(tpl) {
                self.push(Seen::Revoked {
                    lost: consumer.assignment_lost(),
                });
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) if has_partition0(tpl) => self.push(Seen::Assigned),
            Rebalance::Assign(_) => self.push(Seen::AssignedOther),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => self.push(Seen::Error(Trouble::Rebalance(e.clone()))),
        }
    }
}

pub fn spawn_kafka_lock(config: KafkaLockConfig, inputs: mpsc::Sender<Input>) -> LockHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("halyard-kafka-lock".into())
        .spawn(move || run(config, rx, inputs))
        .expect("spawn lock thread");
    LockHandle::new(tx)
}

struct Member {
    consumer: BaseConsumer<LockContext>,
    seen: Arc<Mutex<Vec<Seen>>>,
    held: bool,
    announced: bool,
    handed_back: bool,
    last_check: Instant,
}

fn join(config: &KafkaLockConfig) -> Result<Member, LockError> {
    let topic = config.kafka.lock_topic();
    ensure_topic(&config.kafka, &topic, 1, &[])?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer: BaseConsumer<LockContext> = config
        .kafka
        .client()
        .set("client.id", config.client_id())
        .set("group.id", config.kafka.lock_group())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            config.heartbeat_interval_ms.to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create_with_context(LockContext { seen: seen.clone() })
        .map_err(|source| LockError::Consumer {
            bootstrap: config.kafka.bootstrap.clone(),
            source,
        })?;
    consumer
        .subscribe(&[&topic])
        .map_err(|source| LockError::Join {
            group: config.kafka.lock_group(),
            source,
        })?;
    info!(group = %config.kafka.lock_group(), member = %config.client_id(), "joined the lock group");
    Ok(Member {
        consumer,
        seen,
        held: false,
        announced: false,
        handed_back: false,
        last_check: Instant::now(),
    })
}

fn run(
    config: KafkaLockConfig,
    mut rx: mpsc::UnboundedReceiver<LockMsg>,
    inputs: mpsc::Sender<Input>,
) {
    let mut member: Option<Member> = None;
    let mut want = false;
    let mut last_error_report = Instant::now() - Duration::from_secs(60);
    let send = |ev: LockEvent| inputs.blocking_send(Input::Lock(ev)).is_ok();
    loop {
        // Commands first.
        loop {
            match rx.try_recv() {
                Ok((LockRequest::Acquire, _)) => want = true,
                Ok((LockRequest::Release, done)) => {
                    want = false;
                    if let Some(m) = member.take() {
                        // Closing leaves the group at once: partition 0 moves now.
                        m.consumer.unsubscribe();
                        drop(m);
                        info!("left the lock group");
                    }
                    if let Some(d) = done {
                        // The node may have stopped waiting (its wait is bounded).
                        if d.send(()).is_err() {
                            debug!("lock release confirmed after the node stopped waiting");
                        }
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if want && member.is_none() {
            match join(&config) {
                Ok(m) => member = Some(m),
                Err(e) => {
                    let reason = e.to_string();
                    warn!(%reason, "cannot join the lock group; retrying");
                    if !send(LockEvent::Unavailable { reason }) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let Some(m) = member.as_mut() else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        // Serves heartbeats' outcomes and rebalance callbacks.
        if let Some(Err(e)) = m.consumer.poll(Duration::from_millis(100)) {
            debug!(error = %e, "lock consumer");
        }
        let seen: Vec<Seen> = m
            .seen
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for s in seen {
            match s {
                Seen::Assigned if !m.held => {
                    m.held = true;
                    if !send(LockEvent::Acquired) {
                        return;
                    }
                }
                Seen::AssignedOther if !m.held && !m.announced => {
                    m.announced = true;
                    if !send(LockEvent::Standby) {
                        return;
                    }
                }
                Seen::Revoked { lost } if m.held => {
                    m.held = false;
                    let reason = if lost {
                        "lock group session lost (Kafka unreachable or too slow)"
                    } else {
                        "lock partition revoked"
                    };
                    if !send(LockEvent::Lost {
                        reason: reason.into(),
                    }) {
                        return;
                    }
                }
                // Rate-limited: a down Kafka reports the same error often.
                Seen::Error(trouble) if last_error_report.elapsed() > Duration::from_secs(5) => {
                    last_error_report = Instant::now();
                    let reason = trouble.to_string();
                    if !send(LockEvent::Unavailable { reason }) {
                        return;
                    }
                }
                _ => {}
            }
        }
        // A member that joined and got nothing after a rebalance is a backup;
        // with cooperative assignment an empty Assign may not be reported.
        // (Here and below, a look at the group that fails is simply taken
        // again next round.)
        if !m.held && !m.announced {
            if let Ok(a) = m.consumer.assignment() {
                if a.count() == 0 && m.last_check.elapsed() > Duration::from_secs(1) {
                    if let Ok(list) = m
                        .consumer
                        .fetch_group_list(Some(&config.kafka.lock_group()), Duration::from_secs(2))
                    {
                        let stable = list
                            .groups()
                            .iter()
                            .any(|g| g.state() == "Stable" && g.members().len() > 1);
                        if stable {
                            m.announced = true;
                            if !send(LockEvent::Standby) {
                                return;
                            }
                        }
                    }
                    m.last_check = Instant::now();
                }
            }
        }
        // Failback: a live backup looks for the primary in the group.
        if m.held
            && config.allow_failback
            && config.role == Role::Backup
            && !m.handed_back
            && m.last_check.elapsed() > Duration::from_secs(1)
        {
            m.last_check = Instant::now();
            if let Ok(list) = m
                .consumer
                .fetch_group_list(Some(&config.kafka.lock_group()), Duration::from_secs(2))
            {
                let primary_here = list
                    .groups()
                    .iter()
                    .flat_map(|g| g.members())
                    .any(|mem| mem.client_id().contains("-0-primary-"));
                if primary_here {
                    m.handed_back = true;
                    if !send(LockEvent::HandBack) {
                        return;
                    }
                }
            }
        }
    }
}
