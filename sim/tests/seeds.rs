//! The simulator's own tests: seeds pass, runs are deterministic, and every
//! planted bug is caught.

use halyard_sim::{run, run_seed, SimConfig};

/// Fewer seeds in unoptimised builds; `scripts/test.sh` runs these tests in
/// release mode and then 2,000 seeds through `halyard sim`.
fn seeds() -> u64 {
    if cfg!(debug_assertions) {
        5
    } else {
        100
    }
}

#[test]
fn seeds_pass() {
    for seed in 1..=seeds() {
        let r = run_seed(seed, false);
        assert!(
            r.ok(),
            "seed {seed}: {}\nreplay: halyard sim --seed {seed} --trace",
            r.violations.summary()
        );
        assert!(r.counts.receipted > 0, "seed {seed} receipted nothing");
    }
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17] {
        let a = run_seed(seed, true);
        let b = run_seed(seed, false);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} differs between runs"
        );
        assert!(a.trace.len() > 20, "trace too short: {:?}", a.trace);
    }
    assert_ne!(run_seed(1, false).trace_hash, run_seed(2, false).trace_hash);
}

#[test]
fn faults_are_injected_and_failovers_happen() {
    let (mut crashes, mut fenced, mut failovers, mut pauses, mut cuts) = (0, 0, 0, 0, 0);
    for seed in 1..=seeds().min(20) {
        let r = run_seed(seed, true);
        crashes += r.faults.get("crash").copied().unwrap_or(0);
        pauses += r.faults.get("pause").copied().unwrap_or(0);
        cuts += r.faults.get("kafka-partition").copied().unwrap_or(0);
        fenced += r.kafka.fenced_requests;
        failovers += r
            .trace
            .iter()
            .filter(|l| l.contains("backup is now live"))
            .count();
    }
    assert!(crashes > 10, "only {crashes} crashes");
    assert!(
        pauses > 5 && cuts > 5,
        "pauses {pauses}, Kafka partitions {cuts}"
    );
    assert!(failovers > 10, "only {failovers} failovers");
    if !cfg!(debug_assertions) {
        assert!(fenced > 0, "no write was ever fenced");
    }
}

#[test]
fn amqp_clients_take_part() {
    let (mut acknowledged, mut delivered, mut crossed, mut committed, mut released) =
        (0, 0, 0, 0, 0);
    for seed in 1..=seeds().min(20) {
        let r = run_seed(seed, false);
        assert!(r.ok(), "seed {seed}: {}", r.violations.summary());
        acknowledged += r.counts.amqp_acknowledged;
        delivered += r.counts.amqp_delivered;
        crossed += r.counts.cross_protocol;
        committed += r.counts.committed_accepts;
        released += r.counts.duplicates_by_release;
    }
    assert!(
        acknowledged > 0 && delivered > 0 && crossed > 0,
        "AMQP: {acknowledged} acknowledged, {delivered} delivered, {crossed} crossed protocols"
    );
    if !cfg!(debug_assertions) {
        assert!(
            committed > 0 && released > 0,
            "AMQP: {committed} accepts committed, {released} copies after a release"
        );
    }
}

#[test]
fn amqp_only_seeds_pass() {
    for seed in 1..=seeds().min(20) {
        let mut cfg = SimConfig::from_seed(seed);
        cfg.amqp_share = 1.0;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} with AMQP clients only: {}\nreplay: halyard sim --seed {seed} --amqp-share 1 --trace",
            r.violations.summary()
        );
        assert!(r.counts.receipted > 0, "seed {seed} acknowledged nothing");
    }
}

/// The Kafka bridge takes part: every seed's outside Kafka producer feeds
/// durable subscribers through the bridge, and seeds with topic producers
/// send to a bridged address whose records reach Kafka.
#[test]
fn the_kafka_bridge_takes_part() {
    let mut with_topic_producers = 0;
    for seed in 1..=seeds().min(20) {
        let cfg = SimConfig::from_seed(seed);
        let (records, topic) = (cfg.feed_records, cfg.topic_producers > 0);
        let r = run(cfg, false);
        assert!(r.ok(), "seed {seed}: {}", r.violations.summary());
        assert!(
            r.counts.bridged_in >= records,
            "seed {seed}: {} deliveries of {records} Kafka records",
            r.counts.bridged_in
        );
        if topic {
            with_topic_producers += 1;
            assert!(r.counts.bridged_out > 0, "seed {seed} bridged nothing out");
        }
    }
    assert!(with_topic_producers > 0, "no seed had a topic producer");
}

/// Fenced preemption takes part in the seeds that have it: backups suspect
/// the live and go live without the lock, on true suspicions (the live
/// crashed) and false ones (it was paused, cut off from the backup only, or
/// its lines were slow), and the old lives step down.
#[test]
fn preemption_seeds_preempt() {
    let (mut seeds, mut suspicions, mut false_suspicions) = (0, 0, 0);
    let (mut preemptions, mut false_preemptions, mut stepped_down) = (0, 0, 0);
    let last = if cfg!(debug_assertions) { 12 } else { 50 };
    for seed in 1..=last {
        let cfg = SimConfig::from_seed(seed);
        if !cfg.preemption {
            continue;
        }
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed}: {}\nreplay: halyard sim --seed {seed} --trace",
            r.violations.summary()
        );
        seeds += 1;
        suspicions += r.counts.suspicions;
        false_suspicions += r.counts.false_suspicions;
        preemptions += r.counts.preemptions;
        false_preemptions += r.counts.false_preemptions;
        stepped_down += r.counts.superseded + r.counts.fenced_lives;
    }
    println!(
        "{seeds} preemption seeds: {suspicions} suspicions ({false_suspicions} false), {preemptions} preemptions ({false_preemptions} false), {stepped_down} old lives stepped down"
    );
    assert!(
        seeds * 4 >= last,
        "only {seeds} of {last} seeds have preemption"
    );
    assert!(preemptions > 0, "no preemption");
    assert!(
        false_preemptions > 0 && preemptions > false_preemptions,
        "preemptions: {preemptions}, on a false suspicion: {false_preemptions}"
    );
    assert!(
        false_suspicions > 0 && suspicions > false_suspicions,
        "suspicions: {suspicions}, false: {false_suspicions}"
    );
    assert!(stepped_down > 0, "no old live stepped down");
}

/// Seeds without preemption are the scenarios they were before it existed:
/// the same clients, faults and Kafka settings (spot checks).
#[test]
fn preemption_is_drawn_on_its_own() {
    let with: Vec<u64> = (1..=40)
        .filter(|&s| SimConfig::from_seed(s).preemption)
        .collect();
    assert!(with.len() > 10 && with.len() < 30, "{with:?}");
    let mut base = SimConfig::from_seed(2);
    base.only_base_workload();
    assert!(!base.preemption, "the base workload has no preemption");
}

#[cfg(feature = "planted-bugs")]
mod planted {
    use halyard_core::node::PlantedBug as CoreBug;
    use halyard_sim::{run, DriverBug, PlantedBug, SimConfig};

    /// Runs seeds with the bug until the checker fails one; returns it.
    fn first_catch(bug: PlantedBug, expect: &[&str]) -> (u64, String) {
        first_catch_with(bug, expect, true)
    }

    /// The same, with or without the operator (whose purge rule also
    /// catches a node that answers before the journal has the batch).
    fn first_catch_with(bug: PlantedBug, expect: &[&str], operator: bool) -> (u64, String) {
        for seed in 1..=2_000 {
            let mut cfg = SimConfig::from_seed(seed);
            cfg.planted_bug = Some(bug);
            cfg.operator = operator;
            let r = run(cfg, false);
            if !r.ok() {
                let why = r.violations.summary();
                println!("planted bug {bug:?} caught by seed {seed}: {why}");
                println!("  replay with the bug: SimConfig::from_seed({seed}) with planted_bug = {bug:?}");
                assert!(
                    expect.iter().any(|e| why.contains(e)),
                    "seed {seed} failed for another reason: {why}"
                );
                return (seed, why);
            }
        }
        panic!("planted bug {bug:?} not caught in 2,000 seeds");
    }

    #[test]
    fn receipt_before_durable_is_caught() {
        let bug = PlantedBug::Core(CoreBug::ReceiptBeforeDurable);
        // It completes every pipeline entry early, management changes and
        // the Kafka bridge's ingested batches too (a record delivered before
        // its batch was durable comes in again after a crash).
        first_catch(bug, &["lost", "purge undone", "ingested twice"]);
        // The loss rules alone catch it as well.
        first_catch_with(bug, &["lost", "ingested twice", "never got"], false);
    }

    #[test]
    fn activation_without_fencing_is_caught() {
        first_catch(
            PlantedBug::Driver(DriverBug::SkipFencing),
            &["split brain", "lost"],
        );
    }

    #[test]
    fn accepting_clients_before_the_journal_is_loaded_is_caught() {
        first_catch(
            PlantedBug::Core(CoreBug::AcceptBeforeLoaded),
            &["lost", "split brain"],
        );
    }

    #[test]
    fn removing_a_message_before_its_ack_is_durable_is_caught() {
        // Also records from Kafka, whose subscriptions' acks are early too;
        // and a transactional accept whose message the early ack had
        // already removed from the broker (seed 340: delivered again after
        // the commit; the same seed without the bug passes).
        first_catch(
            PlantedBug::Core(CoreBug::RemoveBeforeAckDurable),
            &[
                "lost",
                "never got",
                "delivered again after a committed accept",
            ],
        );
    }

    #[test]
    fn reusing_message_ids_across_activations_is_caught() {
        first_catch(
            PlantedBug::Core(CoreBug::ReuseIds),
            &["lost", "split brain", "duplicates", "stored twice"],
        );
    }

    /// The same seed with the bug but STOMP clients only passes: what
    /// caught it was the AMQP clients.
    fn passes_without_amqp(bug: PlantedBug, seed: u64) {
        let mut cfg = SimConfig::from_seed(seed);
        cfg.planted_bug = Some(bug);
        cfg.amqp_share = 0.0;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} fails with STOMP clients only: {}",
            r.violations.summary()
        );
    }

    #[test]
    fn amqp_accepted_before_durable_is_caught() {
        let bug = PlantedBug::Core(CoreBug::AmqpAcceptBeforeDurable);
        let (seed, _) = first_catch(bug, &["lost"]);
        passes_without_amqp(bug, seed);
    }

    #[test]
    fn amqp_commit_answered_before_durable_is_caught() {
        let bug = PlantedBug::Core(CoreBug::AmqpDischargeBeforeDurable);
        let (seed, _) = first_catch(bug, &["delivered again after a committed accept", "lost"]);
        passes_without_amqp(bug, seed);
    }

    /// Caught by the purge rule, and only with the operator: the same seed
    /// without it passes.
    #[test]
    fn a_purge_answered_before_durable_is_caught() {
        let bug = PlantedBug::Core(CoreBug::AdminAnswerBeforeDurable);
        let (seed, _) = first_catch(bug, &["purge undone"]);
        let mut cfg = SimConfig::from_seed(seed);
        cfg.planted_bug = Some(bug);
        cfg.operator = false;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} fails without the operator: {}",
            r.violations.summary()
        );
    }

    /// The Kafka bridge's out rule: records written outside the journal's
    /// transaction survive a batch that never commits, and the client's
    /// resend (same duplicate id) is bridged again.
    #[test]
    fn bridging_outside_the_journal_transaction_is_caught() {
        first_catch(
            PlantedBug::Driver(DriverBug::BridgeOutsideTransaction),
            &["bridged to Kafka twice"],
        );
    }

    /// The security rule: with permissions ignored, the intruder's sends
    /// are receipted and delivered. Only that rule catches it: the same
    /// seed without users passes.
    #[test]
    fn ignoring_permissions_is_caught() {
        let bug = PlantedBug::Core(CoreBug::PermissionsIgnored);
        let (seed, _) = first_catch(bug, &["permission not enforced"]);
        let mut cfg = SimConfig::from_seed(seed);
        cfg.planted_bug = Some(bug);
        cfg.security = false;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} fails without users: {}",
            r.violations.summary()
        );
    }

    /// The full-broker rule: with the limits ignored, a node stores STOMP
    /// producers' messages while its disk is full or its messages are at
    /// the memory limit. Only that rule catches it: the same seed without
    /// disk faults and memory limit passes.
    #[test]
    fn ignoring_the_disk_limit_is_caught() {
        let bug = PlantedBug::Core(CoreBug::DiskLimitIgnored);
        let (seed, _) = first_catch(bug, &["memory limit not enforced"]);
        let mut cfg = SimConfig::from_seed(seed);
        cfg.planted_bug = Some(bug);
        cfg.disk_faults = false;
        cfg.memory_max_bytes = 0;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} fails without disk faults and memory limit: {}",
            r.violations.summary()
        );
    }

    /// The memory limit alone is enough for the rule to catch it.
    #[test]
    fn ignoring_the_memory_limit_is_caught() {
        for seed in 1..=200 {
            let mut cfg = SimConfig::from_seed(seed);
            if cfg.memory_max_bytes == 0 {
                continue;
            }
            cfg.planted_bug = Some(PlantedBug::Core(CoreBug::DiskLimitIgnored));
            cfg.disk_faults = false;
            // Paging nodes hold no producer back at the limit.
            cfg.paging = false;
            let r = run(cfg, false);
            if !r.ok() {
                let why = r.violations.summary();
                println!("memory limit ignored: caught by seed {seed}: {why}");
                assert!(why.contains("memory limit not enforced"), "{why}");
                return;
            }
        }
        panic!("ignoring the memory limit not caught in 200 seeds");
    }

    /// Paging keeps a queue in order: a dispatch that looks past a paged
    /// message delivers what is behind it first, which the order rule
    /// catches; the same seed without paging passes.
    #[test]
    fn delivering_past_a_paged_message_is_caught() {
        let bug = PlantedBug::Core(CoreBug::PagingOutOfOrder);
        let (seed, _) = first_catch(bug, &["order violations"]);
        let mut cfg = SimConfig::from_seed(seed);
        cfg.planted_bug = Some(bug);
        cfg.paging = false;
        let r = run(cfg, false);
        assert!(
            r.ok(),
            "seed {seed} fails without paging: {}",
            r.violations.summary()
        );
    }

    /// The Kafka bridge's in rule: a position journaled past the records
    /// ingested skips one.
    #[test]
    fn a_bridge_position_ahead_of_its_records_is_caught() {
        first_catch(
            PlantedBug::Core(CoreBug::BridgePositionAhead),
            &["never got"],
        );
    }

    /// The first preemption seed catching `bug` (a violation naming one of
    /// `expect`), checked to pass without it.
    fn caught_in_a_preemption_seed(bug: PlantedBug, expect: &[&str]) -> (u64, String) {
        let (seed, why) = first_catch(bug, expect);
        assert!(SimConfig::from_seed(seed).preemption);
        let r = run(SimConfig::from_seed(seed), false);
        assert!(
            r.ok(),
            "seed {seed} fails without the bug: {}",
            r.violations.summary()
        );
        (seed, why)
    }

    /// A preemption's open that fences nobody: the suspected live, still
    /// running, keeps committing while the preempting node reads and
    /// serves. The fencing rule catches it (the seed has preemption).
    #[test]
    fn preempting_without_fencing_is_caught() {
        let bug = PlantedBug::Driver(DriverBug::PreemptWithoutFencing);
        caught_in_a_preemption_seed(bug, &["writes from a fenced writer"]);
    }

    /// A watch that suspects within one heartbeat: the backups take the
    /// live role from each other forever. Safe (each open fences the last
    /// live), so only the liveness rule catches it.
    #[test]
    fn suspecting_within_a_heartbeat_is_caught() {
        let bug = PlantedBug::Driver(DriverBug::SuspectWithinHeartbeat);
        let (_, why) = caught_in_a_preemption_seed(bug, &["liveness"]);
        assert!(!why.contains("lost"), "{why}");
    }

    /// A live node deaf to newer live peers: replaced by a preemption, it
    /// stays live until it writes, and after the faults nothing may make
    /// it write. Safe (its writes are fenced), so only the liveness rule
    /// catches it; the same seed without the bug passes.
    #[test]
    fn ignoring_a_newer_live_peer_is_caught() {
        let bug = PlantedBug::Driver(DriverBug::IgnorePeerLive);
        let (_, why) = caught_in_a_preemption_seed(bug, &["liveness"]);
        assert!(!why.contains("lost"), "{why}");
    }

    #[test]
    fn acknowledging_before_the_kafka_commit_is_caught() {
        // A transaction answered before its commit and then aborted undoes
        // what the node already acted on: receipted sends (lost) or a
        // bridge position whose records were already delivered (ingested
        // again when the position is read back).
        first_catch(
            PlantedBug::Driver(DriverBug::AckBeforeCommit),
            &["lost", "ingested twice"],
        );
    }
}

/// The lock coordinator scenario (issue 13): brokers running core's
/// `Coordinator` against the lock service model, with crashes, pauses and
/// partitions; the coordinator checker finds nothing.
mod coordinator {
    use halyard_sim::{run_coordinator_seed, CoordReport};

    fn seeds() -> u64 {
        if cfg!(debug_assertions) {
            10
        } else {
            200
        }
    }

    #[test]
    fn coordinator_seeds_pass() {
        let (mut acquisitions, mut changes, mut refused, mut stale) = (0, 0, 0, 0);
        let (mut receipted, mut acked, mut lost_async, mut applied) = (0, 0, 0, 0);
        let mut handbacks = 0;
        for seed in 1..=seeds() {
            let r: CoordReport = run_coordinator_seed(seed, false);
            assert!(
                r.ok(),
                "coordinator seed {seed}: {}\nreplay: halyard sim --seed {seed} --coordinator-share 1 --trace",
                r.summary()
            );
            acquisitions += r.acquisitions;
            changes += r.in_sync_changes;
            refused += r.refused_takeovers;
            stale += r.stale_refused;
            receipted += r.receipted;
            acked += r.acknowledged;
            lost_async += r.lost_async;
            applied += r.events_applied;
            handbacks += r.handbacks;
        }
        println!(
            "coordinator: {acquisitions} acquisitions, {changes} in-sync changes, {refused} refused takeovers, {stale} stale events refused"
        );
        println!(
            "mirroring: {receipted} messages receipted, {acked} acknowledged, {applied} groups applied by peers, {lost_async} receipted messages lost by async takeovers, {handbacks} handbacks to a primary"
        );
        assert!(handbacks > 0, "no failback happened");
        assert!(
            receipted > seeds() * 100 && acked > seeds() * 20 && applied > receipted,
            "receipted {receipted}, acknowledged {acked}, applied {applied}"
        );
        assert!(acquisitions > seeds() * 2, "{acquisitions} acquisitions");
        assert!(
            changes > 0 && refused > 0 && stale > 0,
            "in-sync changes {changes}, refused takeovers {refused}, stale events refused {stale}"
        );
    }

    #[test]
    fn coordinator_runs_are_deterministic() {
        for seed in [4, 9] {
            let a = run_coordinator_seed(seed, true);
            let b = run_coordinator_seed(seed, false);
            assert_eq!(
                a.trace_hash, b.trace_hash,
                "coordinator seed {seed} differs"
            );
            assert!(a.trace.len() > 20, "trace too short: {:?}", a.trace);
        }
        assert_ne!(
            run_coordinator_seed(1, false).trace_hash,
            run_coordinator_seed(2, false).trace_hash
        );
    }
}

/// Each coordinator rule can fail: a planted bug in core's coordinator is
/// caught by the coordinator checker on some seed (and that seed passes
/// without the bug).
#[cfg(feature = "planted-bugs")]
mod coordinator_planted {
    use halyard_core::coordinator::PlantedBug;
    use halyard_sim::{run_coordinator, CoordConfig};

    fn first_catch(bug: PlantedBug, expect: &str) -> u64 {
        for seed in 1..=500 {
            let mut cfg = CoordConfig::from_seed(seed);
            cfg.planted_bug = Some(bug);
            let r = run_coordinator(cfg, false);
            if let Some(v) = r.violations.iter().find(|v| v.contains(expect)) {
                println!("planted coordinator bug {bug:?} caught by seed {seed}: {v}");
                let clean = run_coordinator(CoordConfig::from_seed(seed), false);
                assert!(
                    clean.ok(),
                    "seed {seed} fails without the bug: {}",
                    clean.summary()
                );
                return seed;
            }
        }
        panic!("planted coordinator bug {bug:?} not caught in 500 seeds");
    }

    #[test]
    fn an_out_of_sync_broker_taking_over_is_caught() {
        first_catch(PlantedBug::TakeOverOutOfSync, "outside the in-sync set");
    }

    #[test]
    fn applying_old_epoch_events_is_caught() {
        first_catch(PlantedBug::ApplyOldEpochEvents, "older than epoch");
    }

    #[test]
    fn a_receipt_before_the_peers_ack_is_caught() {
        first_catch(
            PlantedBug::ReceiptBeforePeerAck,
            "receipted message(s) (sync mirroring)",
        );
    }
}
