//! The real Tokio driver (`halyard_io::server`) and the real failover client
//! (`halyard_io::client`) under madsim: three nodes, a Kafka host serving the
//! simulator's Kafka model, and a client host; the live is killed and
//! restarted, links are clogged, and no receipted message may be lost. This
//! covers the connection code (framing across reads, timeouts, reconnects)
//! that the pure simulator does not.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=1 MADSIM_TEST_NUM=200 \
//!   cargo test -p halyard-io --test madsim_failover --target-dir target/madsim
//! ```
//! A failing seed is printed as `MADSIM_TEST_SEED=...`.
#![cfg(madsim)]

#[path = "madsim/mod.rs"]
mod harness;

#[madsim::test]
async fn failover_of_the_real_drivers_loses_nothing() {
    let lost = harness::scenario::scenario().await;
    assert!(lost.is_empty(), "lost receipted messages: {lost:?}");
}
