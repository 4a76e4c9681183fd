use halyard_sim::{config::SimConfig, trace::Trace, world::World};
#[test]
fn dbg() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let until: u64 = std::env::var("UNTIL").unwrap().parse().unwrap();
    let mut w = World::new(SimConfig::from_seed(seed), Trace::new(true));
    w.start();
    let mut t = 0;
    while t < until { t += 50; w.run_until(t); w.release_topic_producers(); }
    for l in w.kafka.dump("halyard-journal", 0) { println!("{l}"); }
}
