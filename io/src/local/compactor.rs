//! The thread that does the local journal's compaction file work (deleting
//! dead segments, writing cleaned ones) so that the journal thread's appends
//! do not wait for it. The journal thread plans each job and applies its
//! outcome (`LocalJournal::plan_compaction` / `finish_compaction`); this
//! thread only runs [`CompactionJob::run`], one job at a time.

use std::fs::File;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::compaction_job::{CompactionJob, CompactionOutcome};

/// What the compaction thread is given.
enum Work {
    Job(Box<CompactionJob>),
    /// Handles to close: the last ones on deleted files, whose closing
    /// frees their blocks.
    Close(Vec<Arc<File>>),
}

pub(super) struct Compactor {
    jobs: Option<Sender<Work>>,
    done: Receiver<CompactionOutcome>,
    busy: bool,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    pub(super) fn spawn() -> Compactor {
        let (jobs, job_rx) = mpsc::channel::<Work>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("halyard-compact".into())
            .spawn(move || {
                while let Ok(work) = job_rx.recv() {
                    match work {
                        Work::Job(job) => {
                            if done_tx.send(job.run()).is_err() {
                                return;
                            }
                        }
                        Work::Close(files) => drop(files),
                    }
                }
            })
            .expect("spawn the journal's compaction thread");
        Compactor {
            jobs: Some(jobs),
            done,
            busy: false,
            thread: Some(thread),
        }
    }

    /// A job is running (or its outcome not taken yet).
    pub(super) fn busy(&self) -> bool {
        self.busy
    }

    pub(super) fn submit(&mut self, job: CompactionJob) {
        assert!(!self.busy, "one compaction job at a time");
        self.send(Work::Job(Box::new(job)));
        self.busy = true;
    }

    /// Closes `files` on the compaction thread.
    pub(super) fn close(&mut self, files: Vec<Arc<File>>) {
        if !files.is_empty() {
            self.send(Work::Close(files));
        }
    }

    fn send(&self, work: Work) {
        let sent = self.jobs.as_ref().map(|tx| tx.send(work));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the compaction thread is gone"
        );
    }

    /// The running job's outcome, if it is done.
    pub(super) fn try_done(&mut self) -> Option<CompactionOutcome> {
        if !self.busy {
            return None;
        }
        match self.done.try_recv() {
            Ok(outcome) => {
                self.busy = false;
                Some(outcome)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                panic!("the compaction thread died with a job")
            }
        }
    }

    /// Waits for the running job, if there is one.
    pub(super) fn wait(&mut self) -> Option<CompactionOutcome> {
        if !self.busy {
            return None;
        }
        let outcome = self
            .done
            .recv()
            .expect("the compaction thread died with a job");
        self.busy = false;
        Some(outcome)
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        // Closing the queue ends the thread once its job (if any) is done:
        // a job is never cut off halfway by us (a crash may, safely).
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
