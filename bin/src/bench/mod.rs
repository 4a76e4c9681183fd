//! `halyard bench`: a load generator for any STOMP 1.2 or AMQP 1.0 broker.
//!
//! - [`schedule`]: closed loop or an open-loop schedule (coordinated
//!   omission corrected), and the warm-up / measure / drain timeline;
//! - [`payload`]: the timestamp each body carries;
//! - [`seqset`]: which messages arrived, in bounded memory;
//! - [`harness`]: what both protocols share: configuration, counters,
//!   pacing, and the phases of a run;
//! - [`stomp_run`]: STOMP producers and consumers on Tokio;
//! - [`amqp_client`], [`amqp_run`]: an AMQP 1.0 client connection on the
//!   core codec, and AMQP producers and consumers;
//! - [`node_metrics`]: `--node-metrics`, the node's append stalls (journal
//!   compaction pauses) during the measured window, from its `/metrics`;
//! - [`stats`]: HDR histograms, the report, its JSON and its table;
//! - [`plot`]: SVG and PNG plots.

pub mod amqp_client;
pub mod amqp_consumer;
pub mod amqp_link;
pub mod amqp_run;
pub mod harness;
pub mod hires;
pub mod node_metrics;
pub mod payload;
pub mod plot;
pub mod schedule;
pub mod seqset;
pub mod stats;
pub mod stomp_run;

#[cfg(test)]
mod amqp_tests;
#[cfg(test)]
mod node_metrics_tests;
