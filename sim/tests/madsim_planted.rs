//! Self-check of the madsim failover test (a separate binary, so the planted
//! bug cannot leak into the clean test): with a journal adapter that
//! acknowledges appends without writing them, the same scenario must lose
//! receipted messages.
#![cfg(madsim)]

#[path = "madsim/cluster.rs"]
mod cluster;
#[path = "madsim/scenario.rs"]
mod scenario;
#[path = "madsim/wire.rs"]
mod wire;

#[madsim::test]
async fn a_journal_that_acks_without_writing_is_caught() {
    cluster::ACK_WITHOUT_WRITING.store(true, std::sync::atomic::Ordering::Relaxed);
    let lost = scenario::scenario().await;
    assert!(
        !lost.is_empty(),
        "a journal that never wrote lost nothing: the check is blind"
    );
    println!("planted bug caught: {} receipted messages lost", lost.len());
}
