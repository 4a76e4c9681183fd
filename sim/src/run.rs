//! One simulation from start to verdict: run the world in steps, heal the
//! faults, wait until everything receipted was delivered (or the run is
//! stuck), then check.

use std::collections::BTreeMap;

use crate::bridge_check;
use crate::checker::{self, Counts, LossTracker, Violations};
use crate::client::{Client, Protocol};
use crate::config::SimConfig;
use crate::kafka::KafkaStats;
use crate::trace::Trace;
use crate::world::World;

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub violations: Violations,
    pub counts: Counts,
    pub faults: BTreeMap<&'static str, u64>,
    pub trace_hash: u64,
    pub trace: Vec<String>,
    pub end_ms: u64,
    pub events: u64,
    pub kafka: KafkaStats,
    /// Node invariant checks made (only debug builds check).
    pub invariant_checks: u64,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs the seed's default scenario.
pub fn run_seed(seed: u64, keep_trace: bool) -> Report {
    run(SimConfig::from_seed(seed), keep_trace)
}

/// Whether the checker would find nothing lost so far (checked against the
/// full checker in debug builds).
fn nothing_lost(losses: &mut LossTracker, clients: &[Client]) -> bool {
    let nothing = losses.nothing_lost(clients);
    debug_assert_eq!(nothing, checker::check(clients, &[]).0.lost.is_empty());
    nothing
}

/// Runs one simulation to the end and checks it.
pub fn run(cfg: SimConfig, keep_trace: bool) -> Report {
    let mut w = World::new(cfg.clone(), Trace::new(keep_trace));
    let summary = format!(
        "seed {} nodes {} failback {} producers {}+{}tx+{}topic x{} consumers {} durable {} dup-ids {} faults until {} ms{}",
        cfg.seed,
        cfg.nodes,
        cfg.allow_failback,
        cfg.queue_producers,
        cfg.tx_producers,
        cfg.topic_producers,
        cfg.messages_per_producer,
        cfg.queue_consumers,
        cfg.durable_subscribers,
        cfg.duplicate_ids,
        if cfg.faults { cfg.fault_until_ms } else { 0 },
        if cfg.preemption {
            format!(
                " preemption (heartbeat {} ms, suspect after {} ms)",
                cfg.peer_heartbeat_ms,
                crate::world::peer_suspect_ms(&cfg)
            )
        } else {
            String::new()
        }
    );
    w.trace.line(0, "sim", &summary);
    let amqp: Vec<&str> = w
        .clients
        .iter()
        .filter(|c| c.protocol == Protocol::Amqp)
        .map(|c| c.name.as_str())
        .collect();
    if !amqp.is_empty() {
        let line = format!("AMQP clients: {}", amqp.join(" "));
        w.trace.line(0, "sim", &line);
    }
    w.start();
    let step = 250;
    let mut t = 0;
    let mut healed = false;
    let mut idle_since: Option<u64> = None;
    let mut stuck = None;
    let mut losses = LossTracker::new();
    loop {
        t += step;
        w.run_until(t);
        // A node's own bookkeeping went wrong: what follows would not mean much.
        if w.broken_invariant.is_some() {
            break;
        }
        w.release_topic_producers();
        w.start_feed_when_ready();
        if !healed && (t >= cfg.fault_until_ms || !cfg.faults) {
            healed = true;
            w.heal();
        }
        if healed {
            // Done when every producer is done and every group has every
            // receipted message; a run that cannot get there is stuck.
            let producers_done = w.clients.iter().all(|c| c.producer_done());
            // Look only once deliveries pause.
            let quiet = w
                .clients
                .iter()
                .map(|c| c.last_delivery_at)
                .max()
                .unwrap_or(0)
                + 1_000
                <= t;
            let fed = w.feed.done() && bridge_check::feed_delivered(&w.clients, w.feed.sent);
            if producers_done
                && fed
                && quiet
                && t % 1_000 == 0
                && nothing_lost(&mut losses, &w.clients)
            {
                let since = *idle_since.get_or_insert(t);
                // A moment more, so late duplicates are seen too; and not
                // before one node alone is live with the faults over (the
                // liveness rule looks at that; not in the base workload,
                // whose runs stay those of 70d8f86).
                if t >= since + 2_000 && (cfg.base_workload || w.liveness.settled(t)) {
                    break;
                }
            } else if !producers_done {
                idle_since = None;
            }
        }
        if t >= cfg.max_time_ms {
            let unfinished: Vec<String> = w
                .clients
                .iter()
                .filter(|c| !c.producer_done())
                .map(|c| {
                    format!(
                        "{} ({} of its messages receipted)",
                        c.name,
                        c.receipted.len()
                    )
                })
                .collect();
            // Lost messages are reported by the checker; stuck means the
            // cluster stopped serving.
            if !unfinished.is_empty() || w.live_count() == 0 {
                stuck = Some(format!(
                    "not finished {} ms after the faults stopped; live nodes: {}; unfinished producers: {}",
                    t.saturating_sub(cfg.fault_until_ms),
                    w.live_count(),
                    unfinished.join(", ")
                ));
            }
            break;
        }
    }
    let (mut violations, mut counts) = checker::check(&w.clients, &w.kafka.commits);
    if w.operator.rng.is_some() {
        let sent = w
            .clients
            .iter()
            .find(|c| c.name == "pp0")
            .map_or(0, |c| c.sent.len() as u64);
        violations.purge_undone =
            checker::check_purges(w.purged_queue_depth(), w.operator.purged(), sent);
        counts.purges_asked = w.operator.asked;
        counts.purges_refused = w.operator.refused();
        counts.purges_done = w.operator.answers.len() as u64 - counts.purges_refused;
        counts.purged = w.operator.purged();
    }
    if cfg.bridge {
        let now = w.now;
        let committed = w
            .kafka
            .fetch_committed(now, bridge_check::OUT_TOPIC, 0, 0, usize::MAX)
            .map(|f| f.records)
            .unwrap_or_default();
        counts.bridged_out =
            bridge_check::check_out(&w.clients, &committed, &mut violations.bridge);
        counts.bridged_in = bridge_check::check_in(&w.clients, w.feed.sent, &mut violations.bridge);
    }
    if cfg.security {
        violations.denied_done = crate::security_check::check(&w.clients);
        counts.intruders_refused = w
            .clients
            .iter()
            .filter(|c| c.expect_refusal && c.refused)
            .count() as u64;
    }
    violations.disk_limit_ignored = w.disk.check();
    counts.disk_full_periods = w.disk.periods;
    counts.paused_while_full = w.disk.paused;
    counts.memory_full_periods = w.disk.memory_periods;
    counts.paged_in = w.paged_in();
    counts.paging_seeds = u64::from(counts.paged_in > 0);
    violations.fenced_writes = crate::fencing_check::check(&w.kafka.commits, &w.kafka.epoch_bumps);
    if !cfg.base_workload {
        violations.liveness = w.liveness.verdict(w.now);
        counts.liveness_seeds = 1;
        counts.settle_ms = w.liveness.settle_delay().unwrap_or(0);
    }
    if cfg.preemption {
        let p = w.preemption_stats();
        counts.preemption_seeds = 1;
        counts.suspicions = p.suspicions;
        counts.false_suspicions = p.false_suspicions;
        counts.preemptions = p.preemptions;
        counts.false_preemptions = p.false_preemptions;
        counts.superseded = p.superseded;
        counts.fenced_lives = p.fenced;
    }
    violations.stuck = stuck;
    violations.broken_invariant = w.broken_invariant.take();
    let verdict = if violations.is_empty() {
        "checker: ok".to_string()
    } else {
        format!("checker: FAILED: {}", violations.summary())
    };
    w.trace.line(w.now, "sim", &verdict);
    Report {
        seed: cfg.seed,
        violations,
        counts,
        faults: w.faults.by_kind.clone(),
        trace_hash: w.trace.hash(),
        trace: w.trace.lines().to_vec(),
        end_ms: w.now,
        events: w.events_processed,
        kafka: w.kafka.stats.clone(),
        invariant_checks: w.invariant_checks,
    }
}
