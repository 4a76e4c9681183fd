//! The journal port as seen by the driver: the node's `JournalRequest`s go
//! to a journal backend's thread through a [`JournalHandle`]; the backend
//! reports `Input::Journal`s. The helpers below are what the backends'
//! threads (`local`, `kafka`) share around the core's group commit.

use std::time::Duration;

use halyard_core::journal::group_commit::{GroupCommit, JournalStep, NextGroup};
use halyard_core::journal::Entry;
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use tokio::sync::mpsc;

/// Sends commands to a journal backend task or thread.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    tx: mpsc::UnboundedSender<JournalRequest>,
}

impl JournalHandle {
    pub fn new(tx: mpsc::UnboundedSender<JournalRequest>) -> JournalHandle {
        JournalHandle { tx }
    }

    /// Queues a command; a backend that has exited drops it (the node will
    /// not hear back and its activation or drain times out).
    pub fn send(&self, cmd: JournalRequest) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("journal backend has exited; command dropped");
        }
    }
}

/// `Loaded` inputs a backend lets wait in the node's input channel at
/// once. The channel holds thousands of inputs and each `Loaded` carries
/// thousands of entries, so a journal read faster than the node replays it
/// (a fetch from Kafka, a page-cached segment) would otherwise pile the
/// whole backlog's bodies up in the channel, past `--max-memory-bytes`.
const LOADED_QUEUED_MAX: usize = 4;
/// How often a backend waiting for the node to take its `Loaded` looks.
const LOADED_WAIT_STEP: Duration = Duration::from_micros(200);

/// Waits (on the backend's own thread) until at most `LOADED_QUEUED_MAX`
/// inputs wait for the node, then sends `Loaded`. False if the node is gone.
pub(crate) fn send_loaded(inputs: &mpsc::Sender<Input>, entries: Vec<Entry>) -> bool {
    while inputs.max_capacity() - inputs.capacity() > LOADED_QUEUED_MAX && !inputs.is_closed() {
        std::thread::sleep(LOADED_WAIT_STEP);
    }
    inputs
        .blocking_send(Input::Journal(JournalEvent::Loaded { entries }))
        .is_ok()
}

/// The skeleton of a journal backend's thread: waits for the next step the
/// group commit asks for, gathering the node's requests and sending the
/// answers on the way. `wait_for_more` is asked, with the group the next
/// write would take, whether to pause and gather again first (the Kafka
/// journal lingers under load; it must bound how often it says yes).
/// `None` once the node is gone or has dropped its requests' sender.
pub(crate) fn next_step(
    rx: &mut mpsc::UnboundedReceiver<JournalRequest>,
    commit: &mut GroupCommit,
    inputs: &mpsc::Sender<Input>,
    mut wait_for_more: impl FnMut(NextGroup) -> bool,
) -> Option<JournalStep> {
    loop {
        gather(rx, commit);
        while wait_for_more(commit.next_group()) {
            gather(rx, commit);
        }
        let step = commit.poll_step();
        if !send_answers(commit, inputs) {
            return None;
        }
        match step {
            Some(step) => return Some(step),
            None => commit.push(rx.blocking_recv()?),
        }
    }
}

/// Moves what is waiting in the channel into the group commit, until the
/// next group can take no more: what queued up during the last write joins
/// the next one. Returns how many requests it moved. A backend may call it
/// while a write is in flight: the requests are encoded then, not after.
pub(crate) fn gather(
    rx: &mut mpsc::UnboundedReceiver<JournalRequest>,
    commit: &mut GroupCommit,
) -> usize {
    let mut moved = 0;
    while !commit.next_group().sealed {
        match rx.try_recv() {
            Ok(request) => {
                commit.push(request);
                moved += 1;
            }
            Err(_) => break,
        }
    }
    moved
}

/// Sends the answers the group commit has ready, in order, as one input
/// (`Input::Journals` when there are several: one channel hop and one
/// round of the node's after-input work per group commit instead of one
/// per append); false once the node is gone (its input channel closed).
pub(crate) fn send_answers(commit: &mut GroupCommit, inputs: &mpsc::Sender<Input>) -> bool {
    match commit.poll_answers() {
        Some(input) => inputs.blocking_send(input).is_ok(),
        None => true,
    }
}
