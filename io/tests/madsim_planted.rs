//! Self-check of the madsim failover test (a separate binary, so the planted
//! bug cannot leak into the clean test): with a journal adapter that
//! acknowledges appends without writing them, the same scenario must lose
//! receipted messages.
#![cfg(madsim)]

#[path = "madsim/mod.rs"]
mod harness;

#[madsim::test]
async fn a_journal_that_acks_without_writing_is_caught() {
    harness::cluster::ACK_WITHOUT_WRITING.store(true, std::sync::atomic::Ordering::Relaxed);
    let lost = harness::scenario::scenario().await;
    assert!(
        !lost.is_empty(),
        "a journal that never wrote lost nothing: the check is blind"
    );
    println!("planted bug caught: {} receipted messages lost", lost.len());
}
