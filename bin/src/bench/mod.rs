//! `halyard bench`: a load generator for any STOMP 1.2 broker.
//!
//! - [`schedule`]: closed loop or an open-loop schedule (coordinated
//!   omission corrected), and the warm-up / measure / drain timeline;
//! - [`payload`]: the timestamp each body carries;
//! - [`seqset`]: which messages arrived, in bounded memory;
//! - [`run`]: the producers and consumers on Tokio;
//! - [`stats`]: HDR histograms, the report, its JSON and its table;
//! - [`plot`]: SVG and PNG plots.

pub mod payload;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod seqset;
pub mod stats;
