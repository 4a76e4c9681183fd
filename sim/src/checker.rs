//! The checker, in the spirit of Jepsen's total-queue: after the faults stop
//! and everything drained, compare what producers were told (a STOMP
//! receipt, an AMQP `accepted`, an answered commit: "acknowledged") with
//! what consumers got, whatever protocol each side spoke.

use std::collections::{BTreeMap, BTreeSet};

use crate::bridge_check::{BridgeViolations, FEED_PRODUCER};
use crate::client::{Client, Kind, Protocol};
use crate::kafka::Commit;

/// What went wrong, each a failure of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    /// Receipted but never delivered: (group, producer, seq).
    pub lost: Vec<(String, String, u64)>,
    /// Delivered but never sent.
    pub unexpected: Vec<(String, String, u64)>,
    /// Delivered twice with no failover, resend or redelivery to explain it.
    pub unexplained_duplicates: Vec<(String, String, u64)>,
    /// A producer with duplicate ids whose message was stored more than once.
    pub stored_twice: Vec<(String, String, u64)>,
    /// Delivered again after the commit of a transaction that accepted it
    /// was answered (an acknowledged consumption is final).
    pub consumed_again: Vec<(String, String, u64)>,
    /// Within one consumer session, a producer's messages out of order.
    pub order: Vec<String>,
    /// Journal writes accepted from a fenced (older) live, or two nodes for one epoch.
    pub split_brain: Vec<String>,
    /// A write committed by a fenced producer, or by an older epoch once a
    /// newer one opened the journal (see `fencing_check`).
    pub fenced_writes: Vec<String>,
    /// After the faults stopped: no single live node within the bound, or
    /// two at once later (see `liveness_check`).
    pub liveness: Option<String>,
    /// The run did not finish after the faults stopped.
    pub stuck: Option<String>,
    /// A node's `check_invariants` failed (checked in debug builds only).
    pub broken_invariant: Option<String>,
    /// A purge the operator was told was done did not stick (see
    /// [`check_purges`]).
    pub purge_undone: Option<String>,
    /// The Kafka bridge's rules (see `bridge_check`).
    pub bridge: BridgeViolations,
    /// An operation without its permission took effect (see `security_check`).
    pub denied_done: Option<String>,
    /// A node stored a held-back producer's message while its disk was
    /// full (see `disk_check`).
    pub disk_limit_ignored: Option<String>,
}

impl Violations {
    pub fn is_empty(&self) -> bool {
        self.lost.is_empty()
            && self.unexpected.is_empty()
            && self.unexplained_duplicates.is_empty()
            && self.stored_twice.is_empty()
            && self.consumed_again.is_empty()
            && self.order.is_empty()
            && self.split_brain.is_empty()
            && self.fenced_writes.is_empty()
            && self.liveness.is_none()
            && self.stuck.is_none()
            && self.broken_invariant.is_none()
            && self.purge_undone.is_none()
            && self.bridge.is_empty()
            && self.denied_done.is_none()
            && self.disk_limit_ignored.is_none()
    }

    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |name: &str, n: usize, first: Option<String>| {
            if n > 0 {
                parts.push(format!("{n} {name} (first: {})", first.unwrap_or_default()));
            }
        };
        let fmt =
            |v: &Vec<(String, String, u64)>| v.first().map(|(g, p, s)| format!("{p}:{s} in {g}"));
        add("lost", self.lost.len(), fmt(&self.lost));
        add("unexpected", self.unexpected.len(), fmt(&self.unexpected));
        add(
            "unexplained duplicates",
            self.unexplained_duplicates.len(),
            fmt(&self.unexplained_duplicates),
        );
        add(
            "stored twice despite duplicate id",
            self.stored_twice.len(),
            fmt(&self.stored_twice),
        );
        add(
            "delivered again after a committed accept",
            self.consumed_again.len(),
            fmt(&self.consumed_again),
        );
        add(
            "order violations",
            self.order.len(),
            self.order.first().cloned(),
        );
        add(
            "split brain",
            self.split_brain.len(),
            self.split_brain.first().cloned(),
        );
        add(
            "writes from a fenced writer",
            self.fenced_writes.len(),
            self.fenced_writes.first().cloned(),
        );
        if let Some(s) = &self.liveness {
            parts.push(format!("liveness: {s}"));
        }
        if let Some(s) = &self.stuck {
            parts.push(format!("stuck: {s}"));
        }
        if let Some(s) = &self.broken_invariant {
            parts.push(format!("broken invariant: {s}"));
        }
        if let Some(s) = &self.purge_undone {
            parts.push(format!("purge undone: {s}"));
        }
        self.bridge.summary(&mut parts);
        if let Some(s) = &self.denied_done {
            parts.push(format!("permission not enforced: {s}"));
        }
        if let Some(s) = &self.disk_limit_ignored {
            parts.push(format!("disk or memory limit not enforced: {s}"));
        }
        parts.join("; ")
    }
}

/// Counters for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub receipted: u64,
    pub resent: u64,
    pub delivered: u64,
    pub duplicates: u64,
    /// The producer sent it again after losing its connection.
    pub duplicates_by_resend: u64,
    /// The broker flagged it redelivered (NACK, rollback, consumer gone).
    pub duplicates_by_redelivery: u64,
    /// It arrived again on another consumer connection (an ack lost in a failover).
    pub duplicates_by_failover: u64,
    /// A consumer released an earlier copy (AMQP `released`: back as if
    /// never delivered, so not flagged redelivered).
    pub duplicates_by_release: u64,
    /// Clients speaking AMQP, their acknowledged sends and their deliveries.
    pub amqp_clients: u64,
    pub amqp_acknowledged: u64,
    pub amqp_delivered: u64,
    /// Deliveries to a consumer speaking another protocol than the producer.
    pub cross_protocol: u64,
    /// Deliveries whose acceptance was committed in a transaction.
    pub committed_accepts: u64,
    /// Management purges asked, answered "done", refused (not live, or
    /// abandoned by a step-down), and the messages they said they purged.
    pub purges_asked: u64,
    pub purges_done: u64,
    pub purges_refused: u64,
    pub purged: u64,
    /// Kafka bridge: distinct messages committed to the bridged topic, and
    /// deliveries of records the outside producer wrote.
    pub bridged_out: u64,
    pub bridged_in: u64,
    /// Intruders (clients whose user lacks the permission) that were refused.
    pub intruders_refused: u64,
    /// Times a node heard its disk was full, and connections it stopped
    /// reading meanwhile (a SEND held back, or too much in flight).
    pub disk_full_periods: u64,
    pub paused_while_full: u64,
    /// Times a node's messages reached its memory limit.
    pub memory_full_periods: u64,
    /// Paged messages the nodes' journal drivers read back, and seeds
    /// where any were.
    pub paged_in: u64,
    pub paging_seeds: u64,
    /// Fenced preemption, in seeds with it: suspicions of a live peer and
    /// how many were false (the suspect still ran), preemptions (a backup
    /// going live without the lock) and how many on a false suspicion, live
    /// nodes that stepped down on hearing a newer live peer, and live nodes
    /// fenced at a write.
    pub preemption_seeds: u64,
    pub suspicions: u64,
    pub false_suspicions: u64,
    pub preemptions: u64,
    pub false_preemptions: u64,
    pub superseded: u64,
    pub fenced_lives: u64,
    /// Seeds the liveness rule judged (all but the base workload's), and
    /// how long after the faults were over one node alone was live (the
    /// rule's bound is the session timeout + 5 s).
    pub liveness_seeds: u64,
    pub settle_ms: u64,
}

/// The consumer group a consumer belongs to: the queue, or the durable subscription.
fn group_of(c: &Client) -> Option<String> {
    match &c.kind {
        Kind::Consumer {
            durable: Some((id, name)),
            ..
        } => Some(format!("sub:{id}.{name}")),
        Kind::Consumer { destination, .. } if destination == "/queue/DLQ" => None,
        Kind::Consumer { destination, .. } => Some(destination.clone()),
        Kind::Producer { .. } => None,
    }
}

/// The group a delivery counts for: its consumer's, or for a dead-lettered
/// message the group of its origin.
fn group_or_origin<'a>(group: &'a Option<String>, d: &'a crate::client::Delivery) -> &'a str {
    group.as_deref().unwrap_or(d.origin.as_str())
}

pub fn check(clients: &[Client], commits: &[Commit]) -> (Violations, Counts) {
    let mut v = Violations::default();
    let mut counts = Counts::default();

    // What each producer sent and was told.
    struct Sent<'a> {
        client: &'a Client,
        destination: &'a str,
    }
    let mut producers: BTreeMap<&str, Sent> = BTreeMap::new();
    for c in clients {
        if let Kind::Producer { destination, .. } = &c.kind {
            producers.insert(
                c.name.as_str(),
                Sent {
                    client: c,
                    destination,
                },
            );
            counts.sent += c.sent.len() as u64;
            counts.receipted += c.receipted.len() as u64;
            counts.resent += c.resent.len() as u64;
            if c.protocol == Protocol::Amqp {
                counts.amqp_acknowledged += c.receipted.len() as u64;
            }
        }
        if c.protocol == Protocol::Amqp {
            counts.amqp_clients += 1;
            counts.amqp_delivered += c.deliveries.len() as u64;
        }
    }

    // Groups expecting each destination's messages.
    let group_names: Vec<Option<String>> = clients.iter().map(group_of).collect();
    let mut groups: BTreeMap<&str, &str> = BTreeMap::new();
    for (c, g) in clients.iter().zip(&group_names) {
        if let (Some(g), Kind::Consumer { destination, .. }) = (g, &c.kind) {
            groups.insert(g.as_str(), destination.as_str());
        }
    }

    // Deliveries per (group, producer, seq); dead-lettered messages count
    // for the group of their origin (only queues use NACK here). Group and
    // producer names are numbered in name order, so the keys compare as
    // integers and still sort as the names do.
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (c, g) in clients.iter().zip(&group_names) {
        for d in c.deliveries.iter().filter(|d| d.producer != FEED_PRODUCER) {
            names.insert(group_or_origin(g, d));
            names.insert(d.producer.as_str());
        }
    }
    names.extend(groups.keys().copied());
    names.extend(producers.keys().copied());
    let numbers: BTreeMap<&str, u32> = names.iter().zip(0u32..).map(|(n, i)| (*n, i)).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let number = |n: &str| numbers[n];
    type Seen<'a> = Vec<(&'a str, &'a crate::client::Delivery)>;
    let mut delivered: BTreeMap<(u32, u32, u64), Seen> = BTreeMap::new();
    for (c, g) in clients.iter().zip(&group_names) {
        // The numbers of this consumer's group and of the last producer
        // seen (deliveries come in runs from one producer).
        let mut last: Option<(&str, &str, u32, u32)> = None;
        for d in &c.deliveries {
            if d.producer == FEED_PRODUCER {
                // Records from Kafka: the bridge's rules check them.
                continue;
            }
            counts.delivered += 1;
            if d.committed_at.is_some() {
                counts.committed_accepts += 1;
            }
            // One protocol only: nothing crosses (and no lookup per delivery).
            if counts.amqp_clients > 0
                && counts.amqp_clients < clients.len() as u64
                && producers
                    .get(d.producer.as_str())
                    .is_some_and(|p| p.client.protocol != c.protocol)
            {
                counts.cross_protocol += 1;
            }
            let g = group_or_origin(g, d);
            let (gi, pi) = match last {
                Some((lg, lp, gi, pi)) if lg == g && lp == d.producer => (gi, pi),
                _ => (number(g), number(&d.producer)),
            };
            last = Some((g, d.producer.as_str(), gi, pi));
            delivered
                .entry((gi, pi, d.seq))
                .or_default()
                .push((c.name.as_str(), d));
        }
    }

    // Groups with an auto-ack consumer are at most once: not checked for loss.
    let at_most_once: BTreeSet<&str> = clients
        .iter()
        .zip(&group_names)
        .filter(|(c, _)| {
            matches!(
                &c.kind,
                Kind::Consumer {
                    ack: crate::client::AckStyle::Auto,
                    ..
                }
            )
        })
        .filter_map(|(_, g)| g.as_deref())
        .collect();
    for (g, destination) in &groups {
        if at_most_once.contains(g) {
            continue;
        }
        for p in producers.values().filter(|p| p.destination == *destination) {
            for seq in &p.client.receipted {
                let key = (number(g), number(&p.client.name), *seq);
                if !delivered.contains_key(&key) {
                    v.lost.push((g.to_string(), p.client.name.clone(), *seq));
                }
            }
        }
    }

    for ((gi, pi, seq), ds) in &delivered {
        let (g, producer) = (names[*gi as usize], names[*pi as usize]);
        let Some(p) = producers.get(producer) else {
            v.unexpected
                .push((g.to_string(), producer.to_string(), *seq));
            continue;
        };
        if !p.client.sent.contains(seq) {
            v.unexpected
                .push((g.to_string(), producer.to_string(), *seq));
            continue;
        }
        let resent = p.client.resent.contains(seq);
        if !resent {
            // Once a transaction accepting it was committed, it is gone.
            let committed = ds.iter().filter_map(|(_, d)| d.committed_at).min();
            if committed.is_some_and(|t| ds.iter().any(|(_, d)| d.at > t)) {
                v.consumed_again
                    .push((g.to_string(), producer.to_string(), *seq));
            }
        }
        if ds.len() > 1 {
            counts.duplicates += ds.len() as u64 - 1;
            // A later copy is explained by a resend, a redelivery flag, an
            // earlier copy its consumer released, or arriving on another
            // consumer connection than an earlier copy (the earlier one's
            // ack may not have made it).
            let mut ordered = ds.clone();
            ordered.sort_by_key(|(_, d)| d.at);
            for (i, (who, d)) in ordered.iter().enumerate().skip(1) {
                if resent {
                    counts.duplicates_by_resend += 1;
                } else if d.redelivered {
                    counts.duplicates_by_redelivery += 1;
                } else if ordered[..i].iter().any(|(_, e)| e.released) {
                    counts.duplicates_by_release += 1;
                } else if ordered[..i]
                    .iter()
                    .any(|(w, e)| w != who || e.session != d.session)
                {
                    counts.duplicates_by_failover += 1;
                } else {
                    v.unexplained_duplicates
                        .push((g.to_string(), producer.to_string(), *seq));
                }
            }
            if p.client.uses_dup_ids() {
                // Only a protocol that shows the broker's message id tells
                // copies apart (STOMP's message-id; AMQP shows none).
                let ids: BTreeSet<&str> = ds
                    .iter()
                    .map(|(_, d)| d.message_id.as_str())
                    .filter(|id| !id.is_empty())
                    .collect();
                if ids.len() > 1 {
                    v.stored_twice
                        .push((g.to_string(), producer.to_string(), *seq));
                }
            }
        }
    }

    // Order: within one consumer session, first deliveries of messages a
    // producer sent only once arrive in the order they were sent. A message
    // a consumer released comes back unflagged, out of line: left out.
    let released: BTreeSet<(&str, u64)> = clients
        .iter()
        .flat_map(|c| &c.deliveries)
        .filter(|d| d.released)
        .map(|d| (d.producer.as_str(), d.seq))
        .collect();
    for c in clients {
        if group_of(c).is_none() {
            continue;
        }
        let mut last: BTreeMap<(u64, &str), u64> = BTreeMap::new();
        for d in &c.deliveries {
            if d.redelivered || released.contains(&(d.producer.as_str(), d.seq)) {
                continue;
            }
            let Some(p) = producers.get(d.producer.as_str()) else {
                continue;
            };
            if p.client.resent.contains(&d.seq) {
                continue;
            }
            let key = (d.session, d.producer.as_str());
            if let Some(prev) = last.get(&key) {
                if d.seq < *prev {
                    v.order.push(format!(
                        "{} session {} got {}:{} after {}:{}",
                        c.name, d.session, d.producer, d.seq, d.producer, prev
                    ));
                }
            }
            last.insert(key, d.seq.max(*last.get(&key).unwrap_or(&0)));
        }
    }

    // Split brain: once a newer live's writes are committed, an older
    // epoch's write must never be accepted again; one epoch, one node.
    let mut max_epoch = 0u32;
    let mut by_epoch: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    for w in commits.iter().map(|c| &c.writer) {
        by_epoch.entry(w.epoch).or_default().insert(w.node.as_str());
        if w.epoch < max_epoch {
            v.split_brain.push(format!(
                "{} committed a write with epoch {} after epoch {} was live",
                w.node, w.epoch, max_epoch
            ));
        }
        max_epoch = max_epoch.max(w.epoch);
    }
    for (e, nodes) in by_epoch {
        if nodes.len() > 1 {
            v.split_brain
                .push(format!("epoch {e} has writes from {nodes:?}"));
        }
    }
    (v, counts)
}

/// The purge rule. Every message the operator's producer stored in the
/// purged queue (at most one per sequence number: it uses duplicate ids) is
/// at the end either still there, or gone by a purge, or gone by a purge
/// whose answer the operator never got. So the messages left on the live
/// node plus those the "done" answers counted cannot exceed the sequence
/// numbers sent. A purge answered before it was durable and then lost in a
/// crash counts its messages twice (they are back, or purged again) and
/// breaks this; so does a purge that leaves messages behind while saying
/// it took them. `depth` is `None` when no node is live at the end.
pub fn check_purges(depth: Option<u64>, purged: u64, sent: u64) -> Option<String> {
    let depth = depth?;
    (depth + purged > sent).then(|| {
        format!(
            "{depth} message(s) left in the purged queue + {purged} purged by answered purges > {sent} sent"
        )
    })
}

/// Tells, cheaply and as often as asked, whether [`check`] would find
/// nothing lost yet: it remembers every delivery it has seen (deliveries
/// only grow), so each call looks only at the new ones, then at the
/// receipted messages. Used to detect the end of a run; the verdict comes
/// from [`check`].
#[derive(Default)]
pub struct LossTracker {
    /// Deliveries already taken in, per client.
    seen: Vec<usize>,
    /// Group -> producer -> seqs delivered to that group.
    delivered: BTreeMap<String, BTreeMap<String, BTreeSet<u64>>>,
}

impl LossTracker {
    pub fn new() -> LossTracker {
        LossTracker::default()
    }

    /// Same answer as `check(clients, ..).0.lost.is_empty()`.
    pub fn nothing_lost(&mut self, clients: &[Client]) -> bool {
        self.seen.resize(clients.len(), 0);
        for (i, c) in clients.iter().enumerate() {
            let new = &c.deliveries[self.seen[i]..];
            if new.is_empty() {
                continue;
            }
            self.seen[i] = c.deliveries.len();
            let group = group_of(c);
            for d in new {
                let g = group.as_deref().unwrap_or(d.origin.as_str());
                if !self.delivered.contains_key(g) {
                    self.delivered.insert(g.to_string(), BTreeMap::new());
                }
                let by_producer = self.delivered.get_mut(g).expect("inserted");
                if !by_producer.contains_key(d.producer.as_str()) {
                    by_producer.insert(d.producer.clone(), BTreeSet::new());
                }
                by_producer
                    .get_mut(d.producer.as_str())
                    .expect("inserted")
                    .insert(d.seq);
            }
        }
        // The groups `check` examines for loss, and their destinations.
        let group_names: Vec<Option<String>> = clients.iter().map(group_of).collect();
        let at_most_once = |g: &str| {
            clients.iter().zip(&group_names).any(|(c, n)| {
                n.as_deref() == Some(g)
                    && matches!(
                        &c.kind,
                        Kind::Consumer {
                            ack: crate::client::AckStyle::Auto,
                            ..
                        }
                    )
            })
        };
        let mut groups: BTreeMap<&str, &str> = BTreeMap::new();
        for (c, g) in clients.iter().zip(&group_names) {
            if let (Some(g), Kind::Consumer { destination, .. }) = (g, &c.kind) {
                groups.insert(g.as_str(), destination.as_str());
            }
        }
        for (g, destination) in groups {
            if at_most_once(g) {
                continue;
            }
            let by_producer = self.delivered.get(g);
            for p in clients {
                let Kind::Producer {
                    destination: producer_destination,
                    ..
                } = &p.kind
                else {
                    continue;
                };
                if producer_destination != destination || p.receipted.is_empty() {
                    continue;
                }
                let Some(seqs) = by_producer.and_then(|m| m.get(p.name.as_str())) else {
                    return false;
                };
                if p.receipted.len() > seqs.len() || !p.receipted.iter().all(|s| seqs.contains(s)) {
                    return false;
                }
            }
        }
        true
    }
}
