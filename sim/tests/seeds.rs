use halyard_sim::run_seed;

#[test]
fn a_few_seeds() {
    for seed in 1..=5 {
        let r = run_seed(seed, true);
        if !r.ok() {
            for l in &r.trace {
                println!("{l}");
            }
        }
        println!("seed {seed}: {:?} {:?} faults {:?} end {} events {}", r.violations.summary(), r.counts, r.faults, r.end_ms, r.events);
        assert!(r.ok(), "seed {seed}: {}", r.violations.summary());
    }
}
