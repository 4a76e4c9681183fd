//! The HA transitions of a [`Node`]: lock and journal events moving it
//! along the state diagram of [`super::state`].

use crate::broker::Broker;
use crate::ids::{ConnId, IdGen, Ticket};
use crate::journal::{Entry, Record};
use crate::node::{
    AcceptRequest, AdminError, ConnRequest, Event, JournalEvent, JournalRequest, LockEvent,
    LockRequest, Node, Output, PlantedBug, Work,
};

use super::state::{AfterDrain, HaState};

impl Node {
    pub(crate) fn on_start(&mut self) {
        if self.state != HaState::NotStarted {
            return;
        }
        self.state = HaState::Waiting { retry_at: None };
        self.event(Event::Starting {
            node: self.config.node_id.clone(),
            role: self.config.role,
        });
        self.outputs.push_back(Output::Lock(LockRequest::Acquire));
    }

    pub(crate) fn on_lock(&mut self, ev: LockEvent) {
        match ev {
            LockEvent::Acquired => match self.state {
                HaState::Waiting { .. } => {
                    if let Some((peer, epoch)) = self.live_peer.clone() {
                        // A peer preempted (live without the lock); taking
                        // the lock now would fence it for nothing. Leaving
                        // the group hands the lock to it; ask again later.
                        self.event(Event::LockLeftToLivePeer { peer, epoch });
                        self.outputs.push_back(Output::Lock(LockRequest::Release));
                        self.state = HaState::Waiting {
                            retry_at: Some(self.now + self.config.activation_retry_ms),
                        };
                        return;
                    }
                    self.event(Event::LiveLockObtained);
                    self.begin_loading();
                }
                HaState::Stopped => self.outputs.push_back(Output::Lock(LockRequest::Release)),
                // Preempted before the lock came: it follows.
                HaState::Loading | HaState::Activating | HaState::Live => {
                    self.event(Event::LockFollowed)
                }
                _ => {}
            },
            LockEvent::Preempt { peer, reason } => {
                match &self.live_peer {
                    Some((p, _)) if *p == peer => self.live_peer = None,
                    // Another peer says it is live: the suspect was already
                    // replaced (lines read late, after a pause), and
                    // preempting would fence the new live for nothing.
                    Some(_) => return,
                    None => {}
                }
                if matches!(self.state, HaState::Waiting { .. }) {
                    self.event(Event::Preempting { peer, reason });
                    self.begin_loading();
                    // Join the lock group too (a node that just stepped
                    // down has left it): the lock follows the live.
                    self.outputs.push_back(Output::Lock(LockRequest::Acquire));
                }
            }
            LockEvent::PeerNotLive { peer } => {
                if self.live_peer.as_ref().is_some_and(|(p, _)| *p == peer) {
                    self.live_peer = None;
                }
            }
            LockEvent::PeerLive { peer, epoch } => {
                self.live_peer = Some((peer.clone(), epoch));
                // Loading has not picked its epoch yet: its own fencing
                // settles it. Past that, a newer live peer read our
                // activation and fenced us.
                let serving = matches!(
                    self.state,
                    HaState::Activating | HaState::Live | HaState::Draining { .. }
                );
                if serving && epoch > self.epoch {
                    self.step_down(Event::SupersededByPeer {
                        peer,
                        epoch,
                        our_epoch: self.epoch,
                    });
                }
            }
            LockEvent::Standby => {
                if matches!(self.state, HaState::Waiting { .. }) && !self.announced_backup {
                    self.announced_backup = true;
                    self.event(Event::BackupAnnounced);
                }
            }
            LockEvent::Lost { reason } => {
                if self.state.holds_lock() {
                    self.step_down(Event::LockLost { reason });
                }
            }
            LockEvent::HandBack => {
                if self.state == HaState::Live {
                    self.event(Event::FailingBack);
                    self.begin_drain(AfterDrain::BecomeBackup);
                }
            }
            LockEvent::Unavailable { reason } => {
                self.event(Event::LockUnavailable { reason });
            }
        }
    }

    /// The lock is ours (or preempted): fence older writers and read.
    fn begin_loading(&mut self) {
        self.state = HaState::Loading;
        self.broker = Broker::new(self.config.broker_config());
        self.broker.begin_load();
        self.loaded_entries = 0;
        self.opens_unanswered += 1;
        self.outputs
            .push_back(Output::Journal(JournalRequest::Open));
    }

    pub(crate) fn on_journal(&mut self, ev: JournalEvent) {
        match ev {
            JournalEvent::Loaded { entries } => {
                // Part of an open given up: loading it would mix two reads.
                if self.state != HaState::Loading || self.opens_unanswered > 1 {
                    return;
                }
                self.loaded_entries += entries.len() as u64;
                for e in &entries {
                    self.broker.apply(e);
                }
                if self.bug(PlantedBug::AcceptBeforeLoaded) {
                    self.activate();
                }
            }
            JournalEvent::Ready => {
                // The end of an open given up is not the end of this one:
                // going live on it would serve a journal read in part.
                if self.answer_open() || self.state != HaState::Loading {
                    return;
                }
                self.activate();
            }
            JournalEvent::OpenFailed { reason } => {
                if !self.answer_open() && self.state == HaState::Loading {
                    self.step_down(Event::JournalOpenFailed { reason });
                }
            }
            JournalEvent::Durable { ticket } => self.on_durable(ticket),
            JournalEvent::Read {
                asked,
                found,
                error,
            } => self.on_page_read(asked, found, error),
            JournalEvent::Failed { ticket, reason } => {
                self.note_answered(ticket);
                if self.owns_ticket(ticket) {
                    self.step_down(Event::JournalFailed { reason });
                }
            }
            JournalEvent::Fenced { ticket, by_epoch } => {
                self.note_answered(ticket);
                if self.owns_ticket(ticket) {
                    self.step_down(Event::Fenced {
                        by_epoch,
                        our_epoch: self.epoch,
                    });
                } else {
                    // A write still in flight when we stepped down (say, the
                    // lock was lost first): the journal refused it, as it must.
                    self.event(Event::FencedAfterStepDown {
                        by_epoch,
                        our_epoch: self.epoch,
                    });
                }
            }
        }
    }

    /// Counts the answer to an open; true if it answers one given up
    /// (a later open is still unanswered).
    fn answer_open(&mut self) -> bool {
        let given_up = self.opens_unanswered > 1;
        self.opens_unanswered = self.opens_unanswered.saturating_sub(1);
        given_up
    }

    pub(crate) fn owns_ticket(&self, ticket: Ticket) -> bool {
        self.pipeline.iter().any(|p| p.ticket == Some(ticket))
    }

    /// Journal read: pick the next epoch and write it down before serving.
    pub(crate) fn activate(&mut self) {
        self.broker.finish_load();
        let epoch = if self.bug(PlantedBug::ReuseIds) {
            self.broker.max_epoch().max(1)
        } else {
            self.broker.max_epoch() + 1
        };
        self.epoch = epoch;
        self.ids = IdGen::new(epoch);
        self.state = HaState::Activating;
        self.event(Event::JournalLoaded {
            entries: self.loaded_entries,
            messages: self.broker.message_count() as u64,
            queues: self.broker.queues().count() as u64,
        });
        let mut entries = vec![Entry::Put(Record::Activation {
            epoch,
            node: self.config.node_id.clone(),
        })];
        // Replay may have found messages nobody references (acked before a
        // crash, before their tombstones were written): write them now.
        for (id, queues) in self.broker.take_dead() {
            entries.extend(Broker::tombstones_for(id, &queues));
        }
        for key in self.broker.take_dead_dups() {
            entries.push(Entry::Tombstone(key));
        }
        self.submit(entries, Work::Activation { epoch });
    }

    pub(crate) fn became_live(&mut self, epoch: u32) {
        self.state = HaState::Live;
        let was_backup = self.announced_backup;
        self.announced_backup = false;
        self.event(Event::Live { epoch, was_backup });
        self.accepting = true;
        self.outputs.push_back(Output::Accept(AcceptRequest::Start));
        self.bridge_start();
    }

    /// Leave the live role at once: fenced, journal failure or lock lost.
    /// Pending work is dropped unanswered; clients resend what has no receipt.
    pub(crate) fn step_down(&mut self, why: Event) {
        self.event(why);
        self.drop_live_state();
        self.outputs.push_back(Output::Lock(LockRequest::Release));
        self.state = HaState::Waiting {
            retry_at: Some(self.now + self.config.activation_retry_ms),
        };
        self.event(Event::SteppedDown);
    }

    pub(crate) fn drop_live_state(&mut self) {
        self.bridge_stop();
        if self.accepting {
            self.accepting = false;
            self.outputs.push_back(Output::Accept(AcceptRequest::Stop));
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.outputs
                .push_back(Output::Conn(ConnRequest::Close { conn: c }));
        }
        self.conns.clear();
        // Management changes not yet durable: say so rather than go silent.
        let abandoned: Vec<u64> = self
            .pipeline
            .iter()
            .filter_map(|p| match p.work {
                Work::Admin { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        for id in abandoned {
            self.admin_answer(id, Err(AdminError::Abandoned));
        }
        self.pipeline.clear();
        self.housekeeping.clear();
        self.housekeeping_volatile.clear();
        self.housekeeping_moves.clear();
        self.expiry_scan_at = 0;
        self.planned_dups.clear();
        let old = std::mem::replace(&mut self.broker, Broker::new(self.config.broker_config()));
        self.retired_broker = Some(old);
        self.outputs
            .push_back(Output::Journal(JournalRequest::Close));
    }

    pub(crate) fn begin_drain(&mut self, then: AfterDrain) {
        if self.accepting {
            self.accepting = false;
            self.outputs.push_back(Output::Accept(AcceptRequest::Stop));
        }
        self.state = HaState::Draining {
            until: self.now + self.config.drain_timeout_ms,
            then,
        };
        self.maybe_finish_drain(false);
    }

    pub(crate) fn maybe_finish_drain(&mut self, timed_out: bool) {
        let HaState::Draining { then, .. } = self.state else {
            return;
        };
        if !self.pipeline.is_empty() && !timed_out {
            return;
        }
        if timed_out && !self.pipeline.is_empty() {
            self.event(Event::DrainTimedOut {
                pending: self.pipeline.len(),
            });
        }
        self.drop_live_state();
        self.outputs.push_back(Output::Lock(LockRequest::Release));
        match then {
            AfterDrain::BecomeBackup => {
                self.state = HaState::Waiting {
                    retry_at: Some(self.now + self.config.activation_retry_ms),
                };
                self.event(Event::SteppedDown);
            }
            AfterDrain::Stop => {
                self.state = HaState::Stopped;
                self.event(Event::Stopped);
                self.outputs.push_back(Output::Stopped);
            }
        }
    }

    pub(crate) fn on_shutdown(&mut self) {
        match self.state {
            HaState::Live => self.begin_drain(AfterDrain::Stop),
            HaState::Draining { until, .. } => {
                self.state = HaState::Draining {
                    until,
                    then: AfterDrain::Stop,
                }
            }
            HaState::Stopped => {}
            _ => {
                if self.state.holds_lock() {
                    self.drop_live_state();
                }
                self.outputs.push_back(Output::Lock(LockRequest::Release));
                self.state = HaState::Stopped;
                self.event(Event::Stopped);
                self.outputs.push_back(Output::Stopped);
            }
        }
    }

    pub(crate) fn on_tick(&mut self) {
        let now = self.now;
        match self.state {
            HaState::Waiting { retry_at: Some(t) } if now >= t => {
                self.state = HaState::Waiting { retry_at: None };
                self.outputs.push_back(Output::Lock(LockRequest::Acquire));
            }
            HaState::Draining { until, .. } if now >= until => {
                self.maybe_finish_drain(true);
            }
            _ => {}
        }
        self.tick_broker();
        self.tick_sessions();
    }
}
