//! The journal thread's side of the mirror: each group it writes, and
//! journal snapshots a link asked for, go to the hub (`hub.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halyard_core::ids::Ticket;
use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::wire::SNAPSHOT_CHUNK_BYTES_MAX;
use tokio::sync::mpsc;
use tracing::{error, info};

use super::hub::HubMsg;
use crate::local::LocalJournal;

/// Bytes of frames waiting for the peers' sockets past which a snapshot
/// waits (so a slow peer's snapshot does not pile the journal up in memory).
const QUEUED_BYTES_MAX: usize = 4 * SNAPSHOT_CHUNK_BYTES_MAX;
const QUEUED_WAIT_STEP: Duration = Duration::from_millis(1);

/// Given to `spawn_local_journal_mirrored`.
pub struct MirrorTap {
    hub: mpsc::Sender<HubMsg>,
    /// Bytes queued for the peers' sockets (the writers count them down).
    queued: Arc<AtomicUsize>,
    /// Groups written since the journal was opened: the stream's numbering.
    seq: u64,
}

impl MirrorTap {
    pub(crate) fn new(hub: mpsc::Sender<HubMsg>, queued: Arc<AtomicUsize>) -> MirrorTap {
        MirrorTap {
            hub,
            queued,
            seq: 0,
        }
    }

    fn send(&self, msg: HubMsg) {
        if self.hub.blocking_send(msg).is_err() {
            error!("the mirror hub has exited; a journal group was not mirrored");
        }
    }

    /// The node opened the journal (it went active): a new stream.
    pub(crate) fn opened(&mut self) {
        self.seq = 0;
        self.send(HubMsg::StreamOpened);
    }

    /// A group was written and is durable here.
    pub(crate) fn written(&mut self, batches: Vec<Vec<EncodedEntry>>, tickets: Vec<Ticket>) {
        self.seq += 1;
        self.send(HubMsg::Written {
            seq: self.seq,
            batches,
            tickets,
        });
    }

    /// A copy of the journal as of every group written so far, for link
    /// `token`. Appends wait meanwhile (the journal thread does this).
    pub(crate) fn snapshot(&mut self, token: u64, journal: Option<&LocalJournal>) {
        let Some(j) = journal else {
            self.send(HubMsg::SnapshotNone { token });
            return;
        };
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut total = 0usize;
        let result = j.for_each_batch(|batch| {
            bytes += 4;
            chunk.push(
                batch
                    .iter()
                    .map(|e| {
                        bytes += e.key.len() + e.value.as_ref().map_or(0, |v| v.len()) + 8;
                        EncodedEntry {
                            key: e.key.clone(),
                            value: e.value.clone(),
                        }
                    })
                    .collect(),
            );
            if bytes >= SNAPSHOT_CHUNK_BYTES_MAX {
                total += bytes;
                self.send_chunk(token, std::mem::take(&mut chunk));
                bytes = 0;
            }
        });
        match result {
            Ok(()) => {
                if !chunk.is_empty() {
                    total += bytes;
                    self.send_chunk(token, chunk);
                }
                info!(
                    token,
                    bytes = total,
                    seq = self.seq,
                    "journal snapshot read for a mirror peer"
                );
                self.send(HubMsg::SnapshotEnd {
                    token,
                    seq: self.seq,
                });
            }
            Err(e) => {
                error!(error = %e, "reading the journal for a mirror snapshot failed");
                self.send(HubMsg::SnapshotNone { token });
            }
        }
    }

    fn send_chunk(&self, token: u64, batches: Vec<Vec<EncodedEntry>>) {
        while self.queued.load(Ordering::Relaxed) > QUEUED_BYTES_MAX && !self.hub.is_closed() {
            std::thread::sleep(QUEUED_WAIT_STEP);
        }
        self.send(HubMsg::SnapshotChunk { token, batches });
    }
}
