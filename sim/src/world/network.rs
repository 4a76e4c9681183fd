//! The simulated network: client connections with their own latency and
//! in-order delivery per direction, and the cuts faults make (a node from
//! Kafka, a client from a node, lost Kafka replies).

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::Millis;

use crate::rng::Rng;

/// Kafka loses this share of replies when no fault says otherwise.
pub(super) const REPLY_LOSS_NORMAL: f64 = 0.002;

/// One client connection; each side closes on its own.
pub(super) struct Connection {
    pub(super) client: usize,
    pub(super) node: usize,
    /// The node's generation when the connection was made.
    pub(super) generation: u32,
    pub(super) node_open: bool,
    pub(super) client_open: bool,
    /// When the last bytes towards each side arrive; later bytes come after.
    to_node_at: Millis,
    to_client_at: Millis,
}

pub(super) struct Network {
    pub(super) connections: BTreeMap<u64, Connection>,
    next_connection: u64,
    /// The connection each client is using (or trying), if any.
    pub(super) client_connection: Vec<Option<u64>>,
    /// Nodes that cannot reach Kafka.
    pub(super) kafka_cut: BTreeSet<usize>,
    /// (client, node) pairs that cannot reach each other.
    pub(super) client_cut: BTreeSet<(usize, usize)>,
    /// The chance that Kafka applies a request but its reply is lost.
    pub(super) reply_loss: f64,
}

/// How long a message takes: mostly a few ms, sometimes much longer.
pub(super) fn latency(rng: &mut Rng) -> Millis {
    if rng.chance(0.05) {
        rng.range(5, 60)
    } else {
        rng.range(1, 4)
    }
}

impl Network {
    pub(super) fn new() -> Network {
        Network {
            connections: BTreeMap::new(),
            next_connection: 1,
            client_connection: Vec::new(),
            kafka_cut: BTreeSet::new(),
            client_cut: BTreeSet::new(),
            reply_loss: REPLY_LOSS_NORMAL,
        }
    }

    /// Opens a connection from `client` to `node` (whose side opens only if
    /// it is `reachable`) and makes it the client's current one.
    pub(super) fn connect(
        &mut self,
        client: usize,
        node: usize,
        generation: u32,
        reachable: bool,
        now: Millis,
    ) -> u64 {
        let id = self.next_connection;
        self.next_connection += 1;
        self.client_connection[client] = Some(id);
        self.connections.insert(
            id,
            Connection {
                client,
                node,
                generation,
                node_open: reachable,
                client_open: true,
                to_node_at: now,
                to_client_at: now,
            },
        );
        id
    }

    /// When bytes the node sends now reach the client, if the node's side is open.
    pub(super) fn send_to_client(
        &mut self,
        id: u64,
        now: Millis,
        latency: Millis,
    ) -> Option<Millis> {
        let c = self.connections.get_mut(&id).filter(|c| c.node_open)?;
        let at = (now + latency).max(c.to_client_at);
        c.to_client_at = at;
        Some(at)
    }

    /// When bytes the client sends now reach the node, if the client's side is open.
    pub(super) fn send_to_node(&mut self, id: u64, now: Millis, latency: Millis) -> Option<Millis> {
        let c = self.connections.get_mut(&id).filter(|c| c.client_open)?;
        let at = (now + latency).max(c.to_node_at);
        c.to_node_at = at;
        Some(at)
    }

    /// The node closes its side: when the client sees it (after the bytes
    /// already on their way), if the side was open.
    pub(super) fn close_by_node(&mut self, id: u64, now: Millis) -> Option<Millis> {
        let c = self.connections.get_mut(&id).filter(|c| c.node_open)?;
        Some(Self::close_node_side(c, now))
    }

    /// The node crashed: its side is gone whatever its state.
    pub(super) fn node_crashed(&mut self, id: u64, now: Millis) -> Option<Millis> {
        let c = self.connections.get_mut(&id)?;
        Some(Self::close_node_side(c, now))
    }

    fn close_node_side(c: &mut Connection, now: Millis) -> Millis {
        c.node_open = false;
        c.to_client_at.max(now) + 1
    }

    /// The client closes its current connection: when the node sees it, if
    /// the client's side was open.
    pub(super) fn close_by_client(&mut self, client: usize, now: Millis) -> Option<(u64, Millis)> {
        let id = self.client_connection[client].take()?;
        let c = self.connections.get_mut(&id).filter(|c| c.client_open)?;
        c.client_open = false;
        Some((id, c.to_node_at.max(now) + 1))
    }

    /// The node's side learns of the close; the connection is forgotten
    /// once both sides are closed. Returns (node, generation) if it was open.
    pub(super) fn closed_at_node(&mut self, id: u64) -> Option<(usize, u32)> {
        let c = self.connections.get_mut(&id).filter(|c| c.node_open)?;
        c.node_open = false;
        let side = (c.node, c.generation);
        if !c.client_open {
            self.connections.remove(&id);
        }
        Some(side)
    }

    /// The client's side learns of the close; returns the client if it was open.
    pub(super) fn closed_at_client(&mut self, id: u64) -> Option<usize> {
        let c = self.connections.get_mut(&id).filter(|c| c.client_open)?;
        c.client_open = false;
        let client = c.client;
        if !c.node_open {
            self.connections.remove(&id);
        }
        if self.client_connection[client] == Some(id) {
            self.client_connection[client] = None;
        }
        Some(client)
    }

    /// Connections between `client` and `node` with a side still open.
    pub(super) fn between(&self, client: usize, node: usize) -> Vec<u64> {
        self.connections
            .iter()
            .filter(|(_, c)| c.client == client && c.node == node && (c.client_open || c.node_open))
            .map(|(id, _)| *id)
            .collect()
    }
}
