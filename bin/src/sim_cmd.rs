//! `halyard sim`: run seeded simulations and report.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use halyard_sim::{CoordReport, Report, SimConfig};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Replay exactly this seed
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Number of seeds to run (starting at --first)
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of the range
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Parallel workers (default: number of CPUs)
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the run's timeline (with --seed)
    #[arg(long)]
    trace: bool,
    /// Run the seed twice and compare the trace hashes (with --seed)
    #[arg(long)]
    check_determinism: bool,
    /// The chance that a client speaks AMQP rather than STOMP (0 to 1;
    /// default: the simulator's, see SimConfig::amqp_share)
    #[arg(long)]
    amqp_share: Option<f64>,
    /// Only the workload of commit 70d8f86 (issue 10's speed comparison):
    /// no operator, Kafka bridge, users, disk faults or memory limit, and
    /// faults drawn as then. With --amqp-share 0, that commit's clients,
    /// messages and faults (see SimConfig::only_base_workload)
    #[arg(long)]
    base_workload: bool,
    /// The share of seeds that also run the lock coordinator scenario
    /// (0 to 1, decided by the seed alone; a scenario of its own, so the
    /// broker scenario's trace hashes do not change)
    #[arg(long, default_value_t = halyard_sim::COORDINATOR_SHARE_DEFAULT)]
    coordinator_share: f64,
}

/// What changes every seed's scenario.
#[derive(Clone, Copy)]
struct Variant {
    amqp_share: Option<f64>,
    base_workload: bool,
    coordinator_share: f64,
}

/// Runs `seed`'s coordinator scenario if the seed is in the share.
fn run_coordinator(seed: u64, keep_trace: bool, variant: Variant) -> Option<CoordReport> {
    halyard_sim::coordinator_runs(seed, variant.coordinator_share)
        .then(|| halyard_sim::run_coordinator_seed(seed, keep_trace))
}

/// Runs `seed`'s scenario, as `variant` changes it.
fn run_seed(seed: u64, keep_trace: bool, variant: Variant) -> Report {
    let mut cfg = SimConfig::from_seed(seed);
    if let Some(share) = variant.amqp_share {
        cfg.amqp_share = share;
    }
    if variant.base_workload {
        cfg.only_base_workload();
    }
    halyard_sim::run(cfg, keep_trace)
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    failed: Vec<(u64, String)>,
    faults: BTreeMap<&'static str, u64>,
    sent: u64,
    receipted: u64,
    resent: u64,
    delivered: u64,
    duplicates: u64,
    by_resend: u64,
    by_redelivery: u64,
    by_failover: u64,
    by_release: u64,
    amqp_clients: u64,
    amqp_acknowledged: u64,
    amqp_delivered: u64,
    cross_protocol: u64,
    committed_accepts: u64,
    purges_asked: u64,
    purges_done: u64,
    purges_refused: u64,
    purged: u64,
    bridged_out: u64,
    bridged_in: u64,
    intruders_refused: u64,
    disk_full_periods: u64,
    paused_while_full: u64,
    memory_full_periods: u64,
    paged_in: u64,
    paging_seeds: u64,
    preemption_seeds: u64,
    suspicions: u64,
    false_suspicions: u64,
    preemptions: u64,
    false_preemptions: u64,
    superseded: u64,
    fenced_lives: u64,
    liveness_seeds: u64,
    settle_ms_max: u64,
    fenced: u64,
    compactions: u64,
    virtual_ms: u64,
    coordinator_seeds: u64,
    acquisitions: u64,
    in_sync_changes: u64,
    refused_takeovers: u64,
    stale_refused: u64,
    mirror_receipted: u64,
    mirror_acknowledged: u64,
    mirror_applied: u64,
    mirror_lost_async: u64,
    handbacks: u64,
    coordinator_faults: BTreeMap<&'static str, u64>,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.seeds += 1;
        if !r.ok() {
            self.failed.push((r.seed, r.violations.summary()));
        }
        for (k, v) in &r.faults {
            *self.faults.entry(k).or_insert(0) += v;
        }
        self.sent += r.counts.sent;
        self.receipted += r.counts.receipted;
        self.resent += r.counts.resent;
        self.delivered += r.counts.delivered;
        self.duplicates += r.counts.duplicates;
        self.by_resend += r.counts.duplicates_by_resend;
        self.by_redelivery += r.counts.duplicates_by_redelivery;
        self.by_failover += r.counts.duplicates_by_failover;
        self.by_release += r.counts.duplicates_by_release;
        self.amqp_clients += r.counts.amqp_clients;
        self.amqp_acknowledged += r.counts.amqp_acknowledged;
        self.amqp_delivered += r.counts.amqp_delivered;
        self.cross_protocol += r.counts.cross_protocol;
        self.committed_accepts += r.counts.committed_accepts;
        self.purges_asked += r.counts.purges_asked;
        self.purges_done += r.counts.purges_done;
        self.purges_refused += r.counts.purges_refused;
        self.purged += r.counts.purged;
        self.bridged_out += r.counts.bridged_out;
        self.bridged_in += r.counts.bridged_in;
        self.intruders_refused += r.counts.intruders_refused;
        self.disk_full_periods += r.counts.disk_full_periods;
        self.paused_while_full += r.counts.paused_while_full;
        self.memory_full_periods += r.counts.memory_full_periods;
        self.paged_in += r.counts.paged_in;
        self.paging_seeds += r.counts.paging_seeds;
        self.preemption_seeds += r.counts.preemption_seeds;
        self.suspicions += r.counts.suspicions;
        self.false_suspicions += r.counts.false_suspicions;
        self.preemptions += r.counts.preemptions;
        self.false_preemptions += r.counts.false_preemptions;
        self.superseded += r.counts.superseded;
        self.fenced_lives += r.counts.fenced_lives;
        self.liveness_seeds += r.counts.liveness_seeds;
        self.settle_ms_max = self.settle_ms_max.max(r.counts.settle_ms);
        self.fenced += r.kafka.fenced_requests;
        self.compactions += r.kafka.compactions;
        self.virtual_ms += r.end_ms;
    }

    fn add_coordinator(&mut self, c: &CoordReport) {
        self.coordinator_seeds += 1;
        if !c.ok() {
            self.failed
                .push((c.seed, format!("coordinator: {}", c.summary())));
        }
        self.acquisitions += c.acquisitions;
        self.in_sync_changes += c.in_sync_changes;
        self.refused_takeovers += c.refused_takeovers;
        self.stale_refused += c.stale_refused;
        self.mirror_receipted += c.receipted;
        self.mirror_acknowledged += c.acknowledged;
        self.mirror_applied += c.events_applied;
        self.mirror_lost_async += c.lost_async;
        self.handbacks += c.handbacks;
        for (k, v) in &c.faults {
            *self.coordinator_faults.entry(k).or_insert(0) += v;
        }
    }
}

pub fn run(a: SimArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    keep_freed_memory();
    let variant = Variant {
        amqp_share: a.amqp_share,
        base_workload: a.base_workload,
        coordinator_share: a.coordinator_share,
    };
    if let Some(seed) = a.seed {
        let r = run_seed(seed, a.trace, variant);
        if a.trace {
            for l in &r.trace {
                println!("{l}");
            }
        }
        if a.check_determinism {
            let again = run_seed(seed, false, variant);
            if again.trace_hash != r.trace_hash {
                eprintln!(
                    "seed {seed} is not deterministic: {:016x} vs {:016x}",
                    r.trace_hash, again.trace_hash
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "deterministic: two runs of seed {seed} have trace hash {:016x}",
                r.trace_hash
            );
        }
        let coord = run_coordinator(seed, a.trace, variant);
        if let Some(c) = &coord {
            if a.trace {
                for l in &c.trace {
                    println!("{l}");
                }
            }
            if a.check_determinism {
                let again = halyard_sim::run_coordinator_seed(seed, false);
                if again.trace_hash != c.trace_hash {
                    eprintln!(
                        "coordinator seed {seed} is not deterministic: {:016x} vs {:016x}",
                        c.trace_hash, again.trace_hash
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        let mut t = Totals::default();
        t.add(&r);
        if let Some(c) = &coord {
            t.add_coordinator(c);
        }
        print_summary(&t, 0.0);
        println!(
            "trace hash {:016x}, {} events, {} virtual ms",
            r.trace_hash, r.events, r.end_ms
        );
        if let Some(c) = &coord {
            println!(
                "coordinator trace hash {:016x}, {} events, {} virtual ms",
                c.trace_hash, c.events, c.end_ms
            );
        }
        let coord_ok = coord.as_ref().is_none_or(CoordReport::ok);
        return Ok(if r.ok() && coord_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let next = Arc::new(AtomicU64::new(a.first));
    let end = a.first + a.seeds;
    let totals = Arc::new(Mutex::new(Totals::default()));
    let start = Instant::now();
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let next = next.clone();
            let totals = totals.clone();
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let r = run_seed(seed, false, variant);
                let coord = run_coordinator(seed, false, variant);
                let mut t = totals.lock().expect("totals lock");
                t.add(&r);
                if !r.ok() {
                    eprintln!(
                        "\nseed {seed} FAILED: {}\n  replay: halyard sim --seed {seed} --trace",
                        r.violations.summary()
                    );
                }
                if let Some(c) = &coord {
                    t.add_coordinator(c);
                    if !c.ok() {
                        eprintln!(
                            "\nseed {seed} FAILED: coordinator: {}\n  replay: halyard sim --seed {seed} --coordinator-share 1 --trace",
                            c.summary()
                        );
                    }
                }
                let done = t.seeds;
                let total = end - a.first;
                let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let step = if tty { 10 } else { (total / 10).max(1) };
                if done % step == 0 || done == total {
                    let width = 30;
                    let filled = (done * width / total.max(1)) as usize;
                    eprint!(
                        "{}[{}{}] {done}/{total} seeds, {} failed, {:.0} s",
                        if tty { "\r" } else { "" },
                        "#".repeat(filled),
                        ".".repeat(width as usize - filled),
                        t.failed.len(),
                        start.elapsed().as_secs_f64()
                    );
                    if !tty {
                        eprintln!();
                    }
                    let _ = std::io::stderr().flush();
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    eprintln!();
    let t = totals.lock().expect("totals lock");
    print_summary(&t, start.elapsed().as_secs_f64());
    Ok(if t.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(t: &Totals, secs: f64) {
    println!(
        "seeds: {} ({} failed){}",
        t.seeds,
        t.failed.len(),
        if secs > 0.0 {
            format!(" in {secs:.1} s")
        } else {
            String::new()
        }
    );
    let faults: Vec<String> = t.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "faults injected: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    println!(
        "messages: sent {} receipted {} resent {} delivered {}",
        t.sent, t.receipted, t.resent, t.delivered
    );
    println!(
        "duplicates: {} (explained: {} by a producer resend, {} by redelivery, {} by a consumer failover{}; the rest are violations)",
        t.duplicates,
        t.by_resend,
        t.by_redelivery,
        t.by_failover,
        if t.amqp_clients > 0 {
            format!(", {} by a release", t.by_release)
        } else {
            String::new()
        }
    );
    if t.amqp_clients > 0 {
        println!(
            "amqp: {} clients, {} sends acknowledged, {} deliveries ({} accepted in committed transactions); {} deliveries crossed protocols",
            t.amqp_clients, t.amqp_acknowledged, t.amqp_delivered, t.committed_accepts, t.cross_protocol
        );
    }
    if t.purges_asked > 0 {
        println!(
            "operator: {} purges asked, {} done ({} messages), {} refused (not live, or abandoned by a step-down)",
            t.purges_asked, t.purges_done, t.purged, t.purges_refused
        );
    }
    if t.bridged_out + t.bridged_in > 0 {
        println!(
            "kafka bridge: {} messages in bridged topics (each once among committed records), {} deliveries of outside Kafka records",
            t.bridged_out, t.bridged_in
        );
    }
    if t.intruders_refused > 0 {
        println!(
            "security: every client logged in; the intruder (no send permission) was refused in {} of {} seeds, none of its messages stored",
            t.intruders_refused, t.seeds
        );
    }
    if t.disk_full_periods + t.memory_full_periods > 0 {
        println!(
            "limits: {} times a node's disk went above --max-disk-usage, {} times its messages reached --max-memory-bytes; {} connections held back meanwhile, no STOMP producer's message stored while full",
            t.disk_full_periods, t.memory_full_periods, t.paused_while_full
        );
    }
    if t.paged_in > 0 {
        println!(
            "paging: {} paged messages read back from the journal in {} seeds, each queue in order",
            t.paged_in, t.paging_seeds
        );
    }
    if t.preemption_seeds > 0 {
        println!(
            "preemption: {} seeds; {} suspicions of a live peer ({} false: the suspect still ran); {} preemptions ({} on a false suspicion); old lives stepping down: {} on hearing a newer live peer, {} fenced at a write",
            t.preemption_seeds,
            t.suspicions,
            t.false_suspicions,
            t.preemptions,
            t.false_preemptions,
            t.superseded,
            t.fenced_lives
        );
    }
    if t.liveness_seeds > 0 {
        println!(
            "liveness: one node alone live at most {} ms after the faults were over in {} seeds",
            t.settle_ms_max, t.liveness_seeds
        );
    }
    if t.coordinator_seeds > 0 {
        let faults: Vec<String> = t
            .coordinator_faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "coordinator: {} acquisitions, {} in-sync changes, {} refused takeovers, {} stale-epoch events refused in {} seeds (faults: {})",
            t.acquisitions,
            t.in_sync_changes,
            t.refused_takeovers,
            t.stale_refused,
            t.coordinator_seeds,
            if faults.is_empty() { "none".into() } else { faults.join(", ") }
        );
        println!(
            "mirroring: {} messages receipted, {} acknowledged, {} groups applied by peers, {} handbacks to a primary; {} receipted messages lost by takeovers in async seeds (none may be with sync mirroring)",
            t.mirror_receipted,
            t.mirror_acknowledged,
            t.mirror_applied,
            t.handbacks,
            t.mirror_lost_async
        );
    }
    println!(
        "kafka: {} fenced requests, {} compactions; {:.0} virtual seconds",
        t.fenced,
        t.compactions,
        t.virtual_ms as f64 / 1000.0
    );
    if t.failed.is_empty() {
        println!("violations: none");
    } else {
        println!("violations:");
        for (seed, why) in &t.failed {
            println!("  seed {seed}: {why}\n    replay: halyard sim --seed {seed} --trace");
        }
    }
}

/// Keeps memory the allocator frees instead of returning it to the OS, in
/// small pages.
///
/// Every seed builds a world and drops it. A simulation is a batch job
/// whose footprint stays that of one world per worker, so mimalloc need not
/// hand freed pages back to the OS (its default, after a delay) only to
/// fault them in again. Transparent huge pages cost more than they save
/// here: each first touch of a 2 MiB page has the kernel zero all of it
/// (100 seeds took 2.11 s at best with them, 1.81 s without, on the same
/// machine in one run). The broker keeps the defaults.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h ("-1 for no purging at all").
    // libmimalloc-sys does not name it; mimalloc keeps its option indices
    // stable (retired options keep their slots), and it is 15 in v2 and v3.
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    extern "C" {
        fn mi_option_get(option: std::os::raw::c_int) -> std::os::raw::c_long;
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    // SAFETY: both only read or write one entry of mimalloc's option table,
    // at an index within it, and are thread-safe.
    unsafe {
        // A delay in ms; anything else means the index is not what we think.
        if mi_option_get(MI_OPTION_PURGE_DELAY) >= 0 {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag on this process; a failure (an old kernel) changes nothing.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            tracing::debug!(
                "could not turn transparent huge pages off: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
