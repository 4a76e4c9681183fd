//! Broker-to-broker mirroring (issue 13), the I/O around
//! `halyard_core::mirror`: the tap in the local journal thread, the hub
//! (outbox, sync gate, one source link per peer), the sockets, and the
//! target side that writes the active broker's stream into this broker's
//! own journal while it is passive.
//!
//! Wiring (bin/src/node_cmd.rs): [`prepare`] binds the mirror listener and
//! gives the journal thread its tap and the channel it reports into (the
//! sync gate, not the node); the coordinated lock is spawned with
//! [`Prepared::before_active`]; then [`Prepared::start`] runs the hub and
//! the connectors on the coordinator's role and required peers.

mod hub;
mod net;
mod tap;
mod target;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use halyard_core::coordinator::EpochFence;
use halyard_core::node::Input;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::info;

pub use tap::MirrorTap;

use crate::coordinator::{BeforeActive, CoordinatorHandle, Role};
use crate::journal::JournalHandle;
use crate::local::LocalJournalConfig;

/// Messages the hub's channel holds before the journal thread waits.
const HUB_CHANNEL: usize = 1024;

#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// This broker's name (`--node-id`), as its peers' in-sync sets say it.
    pub node: String,
    pub listen: SocketAddr,
    /// `--mirror` peers, as given.
    pub peers: Vec<String>,
    pub sync: bool,
    /// A primary with failback allowed: the target side's welcome asks the
    /// active broker for the active role back once in sync.
    pub prefers_active: bool,
    /// This broker's own journal (the target side writes into it).
    pub journal: LocalJournalConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot listen for mirror links on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What [`prepare`] made, before the lock and the journal exist.
pub struct Prepared {
    config: MirrorConfig,
    node_inputs: mpsc::Sender<Input>,
    hub_tx: mpsc::Sender<HubMsg>,
    hub_rx: mpsc::Receiver<HubMsg>,
    gate_rx: mpsc::Receiver<Input>,
    queued: Arc<AtomicUsize>,
    target: Arc<Mutex<target::TargetJournal>>,
    fence: Arc<Mutex<EpochFence>>,
    listener: TcpListener,
    /// For `spawn_local_journal_mirrored`: the journal thread's tap, and
    /// the channel it reports into.
    pub tap: Option<MirrorTap>,
    pub journal_inputs: mpsc::Sender<Input>,
}

use hub::HubMsg;

/// Binds the mirror listener (it stays open whatever the role).
pub async fn prepare(
    config: MirrorConfig,
    node_inputs: mpsc::Sender<Input>,
) -> Result<Prepared, MirrorError> {
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| MirrorError::Listen {
                addr: config.listen,
                source,
            })?;
    let (hub_tx, hub_rx) = mpsc::channel(HUB_CHANNEL);
    let (gate_tx, gate_rx) = mpsc::channel(crate::server::INPUT_CHANNEL_CAPACITY);
    let queued = Arc::new(AtomicUsize::new(0));
    let tap = MirrorTap::new(hub_tx.clone(), queued.clone());
    let target = Arc::new(Mutex::new(target::TargetJournal::new(
        config.journal.clone(),
    )));
    info!(listen = %config.listen, peers = ?config.peers, sync = config.sync, "mirror listener open");
    Ok(Prepared {
        config,
        node_inputs,
        hub_tx,
        hub_rx,
        gate_rx,
        queued,
        target,
        fence: Arc::new(Mutex::new(EpochFence::new())),
        listener,
        tap: Some(tap),
        journal_inputs: gate_tx,
    })
}

impl Prepared {
    /// For the coordinated lock: before the node hears it holds the lock,
    /// the target side gives the journal up (and refuses older streams).
    pub fn before_active(&self) -> BeforeActive {
        let target = self.target.clone();
        let fence = self.fence.clone();
        Box::new(move |epoch| {
            let target = target.clone();
            let fence = fence.clone();
            Box::pin(async move {
                fence.lock().expect("fence lock").observe(epoch);
                let _ = tokio::task::spawn_blocking(move || {
                    target.lock().expect("target journal lock").give_up();
                })
                .await;
            })
        })
    }

    /// Runs the hub, the connectors and the listener.
    pub fn start(
        self,
        coord: CoordinatorHandle,
        journal: JournalHandle,
        metrics: Arc<crate::metrics::JournalMetrics>,
    ) {
        let (reconnect_tx, reconnect_rx) = watch::channel(0u64);
        for (idx, addr) in self.config.peers.iter().enumerate() {
            tokio::spawn(net::connector(
                idx,
                addr.clone(),
                self.hub_tx.clone(),
                self.queued.clone(),
                coord.role.clone(),
                reconnect_rx.clone(),
            ));
        }
        tokio::spawn(net::listener(
            self.listener,
            self.config.node.clone(),
            self.config.prefers_active,
            self.target.clone(),
            self.fence.clone(),
            coord.news.clone(),
        ));
        // The target's fence learns every epoch the coordinator knows.
        let fence = self.fence.clone();
        let mut newest = coord.newest.clone();
        tokio::spawn(async move {
            while newest.changed().await.is_ok() {
                let e = *newest.borrow_and_update();
                fence.lock().expect("fence lock").observe(e);
            }
        });
        // A broker that steps down takes streams again (once the node
        // has closed its journal: until then opening it fails and the
        // source retries).
        let target = self.target.clone();
        let mut role = coord.role.clone();
        tokio::spawn(async move {
            while role.changed().await.is_ok() {
                if *role.borrow_and_update() == Role::Passive {
                    target.lock().expect("target journal lock").active = false;
                }
            }
        });
        let hub = hub::Hub {
            node: self.config.node.clone(),
            sync: self.config.sync,
            node_inputs: self.node_inputs,
            journal,
            queued: self.queued,
            news: coord.news,
            role: coord.role,
            required: coord.required,
            peers: self.config.peers,
            reconnect: reconnect_tx,
            metrics,
        };
        tokio::spawn(hub.run(self.hub_rx, self.gate_rx));
    }
}
