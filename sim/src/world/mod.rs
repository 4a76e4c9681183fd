//! The simulated world: Kafka, nodes with their drivers, the network,
//! clients and faults, all advanced by one event queue in virtual time.
//!
//! - `state`: the `World` and how it is built;
//! - `events` and `dispatch`: the event queue and what each event does;
//! - `node_host`, `nodes`, `journal_driver` (with `journal_reads`, its
//!   reads of paged messages, and `decoded`), `lock_driver`, `effects`:
//!   each node with its drivers, which return effects;
//! - `kafka_requests` and `kafka_link`: requests to Kafka and their way there and back;
//! - `network`: client connections and cuts;
//! - `faults`: faults and healing; `disk`: the nodes' disks filling up;
//! - `clients`: the clients and their wiring;
//! - `operator`: management requests (purges) during the run;
//! - `peers` and `peer_links`: the nodes' status lines to each other and
//!   their failure detectors (fenced preemption).

mod bridge_reader;
mod clients;
mod decoded;
mod disk;
mod dispatch;
mod effects;
mod events;
mod faults;
mod feed;
mod feed_state;
mod journal_driver;
mod journal_reads;
mod kafka_link;
mod kafka_requests;
mod lock_driver;
mod network;
mod node_host;
mod nodes;
mod operator;
mod operator_log;
mod peer_links;
mod peers;
mod state;

pub(crate) use operator_log::PURGED_QUEUE;
pub(crate) use peer_links::suspect_ms as peer_suspect_ms;
pub(crate) use state::World;
