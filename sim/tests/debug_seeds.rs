//! Seeds with debug assertions on: the core's `debug_assert!`s run and the
//! simulator checks every node's invariants (broker bookkeeping, journal
//! ticket order) after every step it feeds the node. The test is ignored by a
//! plain `cargo test` (an unoptimised build needs about 1.4 s of CPU per
//! seed); run it in the optimised dev profile:
//! `cargo test --profile debug-seeds -p halyard-sim --test debug_seeds -- --include-ignored`.
//! Run in a build without debug assertions it fails: no invariant is checked
//! there. (No `cfg(debug_assertions)` on the file: clippy, which the test
//! command runs in the test-release profile, lints it too.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use halyard_sim::run_seed;

const SEEDS: u64 = 300;

#[test]
#[ignore = "slow unoptimised: run with --profile debug-seeds and --include-ignored"]
fn seeds_pass_with_node_invariants_checked() {
    let next = AtomicU64::new(1);
    let failures = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed > SEEDS {
                    return;
                }
                let r = run_seed(seed, false);
                let why = if !r.ok() {
                    Some(r.violations.summary())
                } else if r.invariant_checks == 0 {
                    Some("node invariants were never checked".to_string())
                } else {
                    None
                };
                if let Some(why) = why {
                    failures.lock().expect("failures").push(format!(
                        "seed {seed}: {why}\n  replay: halyard sim --seed {seed} --trace (a debug build checks invariants)"
                    ));
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures");
    failures.sort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
