//! The mirror link's sockets: a connector per configured peer (dials it
//! while this broker is active, and again after every drop) and the
//! mirror listener (always open: takes the active broker's stream while
//! this one is passive).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halyard_core::coordinator::EpochFence;
use halyard_core::mirror::{encode, MirrorDecoder, MirrorFrame, TargetAction, TargetLink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::hub::{written, HubMsg, HEARTBEAT_EVERY};
use super::target::TargetJournal;
use crate::coordinator::{PeerNews, Role};

/// Wait between two attempts to reach a peer.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A link that hears nothing for this long is dead.
const SILENCE_MAX: Duration = Duration::from_secs(5);
const READ_BUFFER: usize = 256 * 1024;

static CONNS: AtomicU64 = AtomicU64::new(1);
/// Mirror links this broker takes at once (a source per peer, and room for
/// a new one while an old one times out).
const TARGET_LINKS_MAX: usize = 2 * halyard_core::coordinator::PEERS_MAX;

/// A link's queue of bytes to write. However the writer ends (the hub
/// dropped the link, the socket failed, the task was aborted while a
/// write hung on a cut link), what is still queued is counted down, and
/// later sends fail (and are counted down by the hub).
struct Outgoing {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(b) = self.rx.try_recv() {
            written(&self.queued, b.len());
        }
    }
}

/// Dials peer `idx` while `role` is active; reports to the hub.
pub(crate) async fn connector(
    idx: usize,
    addr: String,
    hub: mpsc::Sender<HubMsg>,
    queued: Arc<AtomicUsize>,
    mut role: watch::Receiver<Role>,
    mut reconnect: watch::Receiver<u64>,
) {
    loop {
        while !matches!(*role.borrow_and_update(), Role::Active { .. }) {
            if role.changed().await.is_err() {
                return;
            }
        }
        reconnect.borrow_and_update();
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = CONNS.fetch_add(1, Ordering::Relaxed);
        let (mut rd, mut wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel::<Bytes>();
        if hub
            .send(HubMsg::PeerUp {
                idx,
                conn,
                writer: wtx,
            })
            .await
            .is_err()
        {
            return;
        }
        let mut out = Outgoing {
            rx: wrx,
            queued: queued.clone(),
        };
        let writer = tokio::spawn(async move {
            while let Some(b) = out.rx.recv().await {
                written(&out.queued, b.len());
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            // Dropped by the hub (or the socket failed): end the link.
            let _ = wr.shutdown().await;
        });
        let mut decoder = MirrorDecoder::new();
        let mut buf = vec![0u8; READ_BUFFER];
        let reason = loop {
            tokio::select! {
                r = tokio::time::timeout(SILENCE_MAX, rd.read(&mut buf)) => match r {
                    Err(_) => break "silent too long".to_string(),
                    Ok(Ok(0)) => break "closed".to_string(),
                    Ok(Err(e)) => break e.to_string(),
                    Ok(Ok(n)) => {
                        if let Err(e) = decoder.push(&buf[..n]) {
                            break e.to_string();
                        }
                        let mut failed = None;
                        loop {
                            match decoder.next_frame() {
                                Ok(Some(frame)) => {
                                    if hub.send(HubMsg::PeerFrame { idx, conn, frame }).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    failed = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                        if let Some(f) = failed {
                            break f;
                        }
                    }
                },
                _ = reconnect.changed() => break "a new stream".to_string(),
            }
        };
        writer.abort();
        if hub
            .send(HubMsg::PeerDown { idx, conn, reason })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// The mirror listener: each connection is a source's stream, taken while
/// this broker is passive.
pub(crate) async fn listener(
    listener: TcpListener,
    node: String,
    prefers_active: bool,
    journal: Arc<Mutex<TargetJournal>>,
    fence: Arc<Mutex<EpochFence>>,
    news: mpsc::UnboundedSender<PeerNews>,
) {
    let links = Arc::new(tokio::sync::Semaphore::new(TARGET_LINKS_MAX));
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        };
        let Ok(permit) = links.clone().try_acquire_owned() else {
            warn!(%from, "{TARGET_LINKS_MAX} mirror links open already: refusing one from {from}");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (node, journal, fence, news) =
            (node.clone(), journal.clone(), fence.clone(), news.clone());
        tokio::spawn(async move {
            serve(stream, from, node, prefers_active, journal, fence, news).await;
            drop(permit);
        });
    }
}

async fn serve(
    stream: TcpStream,
    from: SocketAddr,
    node: String,
    prefers_active: bool,
    journal: Arc<Mutex<TargetJournal>>,
    fence: Arc<Mutex<EpochFence>>,
    news: mpsc::UnboundedSender<PeerNews>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (active, position) = {
        let j = journal.lock().expect("target journal lock");
        (j.active, j.position())
    };
    if active {
        let mut out = BytesMut::new();
        encode(
            &MirrorFrame::Close {
                error: Some("this broker is active".into()),
            },
            &mut out,
        );
        let _ = wr.write_all(&out).await;
        return;
    }
    let mut link = TargetLink::new(&node, position).prefers_active(prefers_active);
    let mut decoder = MirrorDecoder::new();
    let mut buf = vec![0u8; READ_BUFFER];
    // The first beat one period in: an empty frame before the protocol
    // header the first answer carries would be refused by the source.
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    let mut source: Option<String> = None;
    let reason: String = 'link: loop {
        let n = tokio::select! {
            r = tokio::time::timeout(SILENCE_MAX, rd.read(&mut buf)) => match r {
                Err(_) => break 'link "silent too long".into(),
                Ok(Ok(0)) => break 'link "closed".into(),
                Ok(Err(e)) => break 'link e.to_string(),
                Ok(Ok(n)) => n,
            },
            _ = heartbeat.tick() => {
                // Not before the welcome went out: its protocol header
                // must be the first bytes the source reads.
                if link.epoch().is_none() {
                    continue;
                }
                let mut out = BytesMut::new();
                encode(&MirrorFrame::Heartbeat, &mut out);
                if wr.write_all(&out).await.is_err() {
                    break 'link "write failed".into();
                }
                continue;
            }
        };
        if let Err(e) = decoder.push(&buf[..n]) {
            break e.to_string();
        }
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'link e.to_string(),
            };
            if let MirrorFrame::Hello { node: src, epoch } = &frame {
                info!(source = %src, epoch, %from, "taking {src}'s mirror stream of epoch {epoch}");
                source = Some(src.clone());
                let _ = news.send(PeerNews::EpochSeen { epoch: *epoch });
            }
            let r = {
                let mut f = fence.lock().expect("fence lock");
                link.on_frame(frame, &mut f)
            };
            if let Err(e) = r {
                let mut out = BytesMut::new();
                encode(
                    &MirrorFrame::Close {
                        error: Some(e.to_string()),
                    },
                    &mut out,
                );
                let _ = wr.write_all(&out).await;
                break 'link e.to_string();
            }
        }
        // Every action of what this read brought, in one go: one append
        // and one sync for a run of groups, then each delivery acknowledged.
        let actions: Vec<TargetAction> = std::iter::from_fn(|| link.poll_action()).collect();
        if !actions.is_empty() {
            let deliveries: Vec<u32> = actions
                .iter()
                .filter_map(|a| match a {
                    TargetAction::Append { delivery, .. }
                    | TargetAction::SnapshotChunk { delivery, .. }
                    | TargetAction::SnapshotEnd { delivery, .. } => Some(*delivery),
                    TargetAction::SnapshotBegin => None,
                })
                .collect();
            let j = journal.clone();
            let applied = tokio::task::spawn_blocking(move || {
                j.lock().expect("target journal lock").apply_all(actions)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = applied {
                break 'link format!("applying the stream: {e}");
            }
            for d in deliveries {
                link.durable(d);
            }
        }
        let mut out = BytesMut::new();
        while let Some(f) = link.poll_frame() {
            encode(&f, &mut out);
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            break 'link "write failed".into();
        }
    };
    warn!(source = ?source, %from, %reason, "mirror stream from {} ended", source.as_deref().unwrap_or("?"));
}
