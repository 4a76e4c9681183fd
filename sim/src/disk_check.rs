//! The full-broker rule: while a node's disk is above `--max-disk-usage`
//! (from the reading that said so until the one that said there is room
//! again), or its messages are at `--max-memory-bytes` (from the node's
//! `MemoryFull` event to its `MemoryRoom`), the node stores no new message
//! from a STOMP producer sending outside transactions: each such SEND
//! waits unreceipted. AMQP producers
//! may use the credit they already had and a commit may store what was
//! sent before, so they are left out. That held producers go on once
//! there is room is the checker's other rules: nothing may stay unsent
//! or undelivered when the run ends.

use std::collections::BTreeSet;

use halyard_core::journal::{Entry, Record};
use halyard_core::message::Value;
use halyard_core::node::{DiskUsage, Event};

use crate::client::{Client, Kind, Protocol, PRODUCER};

/// What the simulated disk reports: well below the nodes' limit (90%), or
/// above it.
pub const ROOM: DiskUsage = DiskUsage {
    used_bytes: 500,
    total_bytes: 1000,
};
pub const FULL: DiskUsage = DiskUsage {
    used_bytes: 950,
    total_bytes: 1000,
};

/// The rule's bookkeeping over a run.
#[derive(Debug, Default)]
pub struct DiskWatch {
    /// The clients whose sends the rule covers (STOMP, no transactions).
    held_producers: BTreeSet<String>,
    /// Per node: it was last told its disk is full.
    knows_full: Vec<bool>,
    /// Per node: it said its messages reached the memory limit.
    memory_full: Vec<bool>,
    /// Times a node said its messages reached the memory limit.
    pub memory_periods: u64,
    /// Times a node was told its disk is full.
    pub periods: u64,
    /// Connections a node stopped reading while it knew its disk was full.
    pub paused: u64,
    /// Messages of covered producers a node stored while it knew its disk
    /// was full: (node, producer, count).
    pub stored_while_full: Vec<(String, String, u64)>,
}

impl DiskWatch {
    pub fn new(clients: &[Client], nodes: usize) -> DiskWatch {
        let held_producers = clients
            .iter()
            .filter(|c| {
                c.protocol == Protocol::Stomp
                    && matches!(
                        c.kind,
                        Kind::Producer {
                            transaction_size: None,
                            ..
                        }
                    )
            })
            .map(|c| c.name.clone())
            .collect();
        DiskWatch {
            held_producers,
            knows_full: vec![false; nodes],
            memory_full: vec![false; nodes],
            ..DiskWatch::default()
        }
    }

    /// Node `node` was given `usage`.
    pub fn told(&mut self, node: usize, usage: DiskUsage) {
        let full = usage == FULL;
        if full && !self.knows_full[node] {
            self.periods += 1;
        }
        self.knows_full[node] = full;
    }

    /// A crashed node forgets its readings; a restart tells it again.
    pub fn crashed(&mut self, node: usize) {
        self.knows_full[node] = false;
        self.memory_full[node] = false;
    }

    /// Node `node` reported `event`.
    pub fn heard(&mut self, node: usize, event: &Event) {
        match event {
            Event::MemoryFull { .. } => {
                self.memory_periods += 1;
                self.memory_full[node] = true;
            }
            Event::MemoryRoom { .. } => self.memory_full[node] = false,
            _ => {}
        }
    }

    fn stopped(&self, node: usize) -> bool {
        self.knows_full[node] || self.memory_full[node]
    }

    /// Node `node` stopped reading a connection.
    pub fn paused_reading(&mut self, node: usize) {
        if self.stopped(node) {
            self.paused += 1;
        }
    }

    /// Node `node` (named `name`) appends `entries`.
    pub fn appended(&mut self, node: usize, name: &str, entries: &[Entry]) {
        if !self.stopped(node) {
            return;
        }
        for e in entries {
            let Entry::Put(Record::MessageStored { message, .. }) = e else {
                continue;
            };
            let Some(Value::String(producer)) = message.property(PRODUCER) else {
                continue;
            };
            if !self.held_producers.contains(producer.as_str()) {
                continue;
            }
            match self
                .stored_while_full
                .iter_mut()
                .find(|(n, p, _)| n == name && p == producer)
            {
                Some((_, _, count)) => *count += 1,
                None => self
                    .stored_while_full
                    .push((name.to_string(), producer.to_string(), 1)),
            }
        }
    }

    /// Violations of the rule, as one line (`None`: kept).
    pub fn check(&self) -> Option<String> {
        let parts: Vec<String> = self
            .stored_while_full
            .iter()
            .map(|(n, p, c)| format!("{n} stored {c} messages of {p} while full"))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}
