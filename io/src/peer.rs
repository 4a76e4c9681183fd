//! The peer port of fenced preemption (`--peer-listen`, `--peer`): every
//! node says what it is, one line every heartbeat, to every node connected
//! to its peer port; every node holds a connection to each `--peer` and
//! feeds what it hears into core's [`PeerWatch`]. A suspicion becomes
//! `LockEvent::Preempt`, a live peer `LockEvent::PeerLive`; the node decides
//! (core/src/ha/transitions.rs). The links carry no data and no authority:
//! losing them only slows failover down to the lock's session timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_core::ha::watch::{PeerStatus, PeerWatch, WatchOutput, PEERS_MAX, STATUS_LINE_MAX};
use halyard_core::node::{Input, LockEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn, Instrument};

/// How often a status line goes out (and a silent link is looked at).
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
/// Silence after which a live peer is suspected.
pub const SUSPECT_MS_DEFAULT: u64 = 500;
/// Connections the peer port serves at once (2 per possible peer).
const LINKS_MAX: usize = 2 * PEERS_MAX;

#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub node_id: String,
    /// Where this node's peer port listens.
    pub listen: SocketAddr,
    /// Other nodes' peer ports (`HOST:PORT`).
    pub peers: Vec<String>,
    pub heartbeat_ms: u64,
    pub suspect_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen on --peer-listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the node's task publishes for the peer port: `Some(epoch)` while
/// it serves clients as the live node.
pub type LiveEpoch = watch::Receiver<Option<u32>>;

/// Binds the peer port (an error names the address) and starts the
/// listener, one connector per peer and the watch.
pub async fn start(
    config: PeerConfig,
    live: LiveEpoch,
    inputs: mpsc::Sender<Input>,
) -> Result<(), PeerError> {
    assert!(config.heartbeat_ms > 0 && config.suspect_ms > config.heartbeat_ms);
    assert!(config.peers.len() <= PEERS_MAX);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| PeerError::Listen {
            addr: config.listen,
            source,
        })?;
    info!(listen = %config.listen, peers = ?config.peers, suspect_ms = config.suspect_ms,
        "peer port open: fenced preemption on");
    let config = Arc::new(config);
    tokio::spawn(serve(listener, config.clone(), live).instrument(tracing::Span::current()));
    let (heard_tx, heard_rx) = mpsc::channel(64);
    for (i, addr) in config.peers.iter().enumerate() {
        tokio::spawn(
            follow(i, addr.clone(), config.clone(), heard_tx.clone())
                .instrument(tracing::Span::current()),
        );
    }
    tokio::spawn(run_watch(config, heard_rx, inputs).instrument(tracing::Span::current()));
    Ok(())
}

async fn serve(listener: TcpListener, config: Arc<PeerConfig>, live: LiveEpoch) {
    let links = Arc::new(Semaphore::new(LINKS_MAX));
    let mut stopped = live.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // The node stopped: no new links (a peer reconnecting would
            // hear one stale line and suspect again).
            _ = stopped.wait_for(|_| false) => return,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "peer port accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = links.clone().try_acquire_owned() else {
            warn!(%from, "peer port: {LINKS_MAX} links already open, refusing one");
            continue;
        };
        let config = config.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let _permit = permit;
            talk(stream, &config, live).await;
            debug!(%from, "peer link closed");
        });
    }
}

/// Writes this node's status every heartbeat, and at once when it changes.
async fn talk(mut stream: TcpStream, config: &PeerConfig, mut live: LiveEpoch) {
    let _ = stream.set_nodelay(true);
    let mut tick = tokio::time::interval(Duration::from_millis(config.heartbeat_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let status = PeerStatus {
            node: config.node_id.clone(),
            live_epoch: *live.borrow_and_update(),
        };
        if stream.write_all(status.line().as_bytes()).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = live.changed() => if changed.is_err() { return },
        }
    }
}

enum Heard {
    Line(usize, PeerStatus),
    Closed(usize),
}

/// Holds a link to one peer, reconnecting; every line goes to the watch.
async fn follow(i: usize, addr: String, config: Arc<PeerConfig>, heard: mpsc::Sender<Heard>) {
    // A link silent this long is dropped and dialled again (the watch has
    // long since drawn its conclusion from the silence).
    let read_timeout = Duration::from_millis(config.suspect_ms * 4);
    let mut logged_down = false;
    loop {
        let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await;
        let Ok(Ok(stream)) = stream else {
            if !logged_down {
                logged_down = true;
                debug!(peer = %addr, "peer port not answering; retrying");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        logged_down = false;
        let _ = stream.set_nodelay(true);
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            let read = tokio::time::timeout(
                read_timeout,
                (&mut lines)
                    .take(STATUS_LINE_MAX as u64 + 1)
                    .read_line(&mut line),
            )
            .await;
            match read {
                Ok(Ok(n)) if n > 0 && line.ends_with('\n') => {
                    match PeerStatus::parse(line.trim_end()) {
                        Ok(s) if s.node == config.node_id => {
                            warn!(peer = %addr, "--peer {addr} is this node's own peer port; not watching it");
                            return;
                        }
                        Ok(s) => {
                            if heard.send(Heard::Line(i, s)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(peer = %addr, "peer link dropped: {e}");
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        if heard.send(Heard::Closed(i)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Owns the [`PeerWatch`]: lines and closes in, suspicions out.
async fn run_watch(
    config: Arc<PeerConfig>,
    mut heard: mpsc::Receiver<Heard>,
    inputs: mpsc::Sender<Input>,
) {
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut w = PeerWatch::new(config.peers.len(), config.suspect_ms);
    loop {
        let sleep = match w.next_deadline() {
            Some(at) => Duration::from_millis(at.saturating_sub(now())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            h = heard.recv() => match h {
                Some(Heard::Line(i, s)) => w.heard(now(), i, &s),
                Some(Heard::Closed(i)) => w.closed(i),
                None => return,
            },
            _ = tokio::time::sleep(sleep) => w.tick(now()),
        }
        while let Some(out) = w.poll_output() {
            let ev = match out {
                WatchOutput::Suspect {
                    node,
                    epoch,
                    reason,
                } => {
                    info!(peer = %node, epoch, "live {node} (epoch {epoch}) suspected gone: {reason}");
                    LockEvent::Preempt {
                        peer: node,
                        reason: reason.to_string(),
                    }
                }
                WatchOutput::PeerLive { node, epoch } => {
                    info!(peer = %node, epoch, "peer {node} is live (epoch {epoch})");
                    LockEvent::PeerLive { peer: node, epoch }
                }
                WatchOutput::PeerNotLive { node } => {
                    info!(peer = %node, "peer {node} is no longer live");
                    LockEvent::PeerNotLive { peer: node }
                }
            };
            if inputs.send(Input::Lock(ev)).await.is_err() {
                return;
            }
        }
    }
}
