//! The host of one simulated node: the `Node` itself (absent while crashed),
//! its generation, pause, connections, and its journal and lock drivers.

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::ha::Role;
use halyard_core::node::Node;
use halyard_core::Millis;

use super::bridge_reader::BridgeReader;
use super::journal_driver::JournalDriver;
use super::kafka_requests::RequestKind;
use super::lock_driver::LockDriver;
use crate::config::SimConfig;

pub(super) struct NodeHost {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) node: Option<Node>,
    /// Bumped at every boot, so events meant for an earlier incarnation are dropped.
    pub(super) generation: u32,
    pub(super) paused_until: Option<Millis>,
    pub(super) accepting: bool,
    /// The node's tick already scheduled, if any.
    pub(super) tick_at: Option<Millis>,
    pub(super) connections: BTreeSet<u64>,
    /// Requests sent to Kafka and waiting for an answer, by request id.
    pub(super) requests_in_flight: BTreeMap<u64, RequestKind>,
    pub(super) journal: JournalDriver,
    pub(super) lock: LockDriver,
    pub(super) bridge: BridgeReader,
    /// Its disk is above the nodes' `--max-disk-usage` (a fault).
    pub(super) disk_full: bool,
}

impl NodeHost {
    /// The `index`-th node of the cluster (the first is the primary), not booted.
    pub(super) fn new(index: usize, cfg: &SimConfig) -> NodeHost {
        let name = format!("n{}", index + 1);
        let role = if index == 0 {
            Role::Primary
        } else {
            Role::Backup
        };
        NodeHost {
            journal: JournalDriver::new(name.clone(), cfg.planted_bug),
            lock: LockDriver::new(&name, role, cfg.allow_failback),
            name,
            role,
            node: None,
            generation: 0,
            paused_until: None,
            accepting: false,
            tick_at: None,
            connections: BTreeSet::new(),
            requests_in_flight: BTreeMap::new(),
            bridge: BridgeReader::default(),
            disk_full: false,
        }
    }

    /// The node's activation epoch (0 while crashed).
    pub(super) fn node_epoch(&self) -> u32 {
        self.node.as_ref().map_or(0, Node::epoch)
    }
}
