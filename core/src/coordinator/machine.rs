//! The lock coordinator's state machine for one broker.
//!
//! The driver promises: every [`Output::Acquire`], [`Output::ReadState`]
//! and [`Output::WriteState`] is answered exactly once, in order (a lock
//! service that does not answer in time is answered with
//! [`Input::AcquireFailed`] or [`WriteRefusal::Unavailable`]); `now` never
//! goes backwards (the machine clamps).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::fence::{EpochFence, StaleEpoch};
use super::types::{
    CoordinatorConfig, CoordinatorConfigError, Event, Input, LockState, Output, WriteRefusal,
};
use crate::Millis;

/// Most outputs waiting to be taken: one input makes a handful, so more
/// means the driver stopped draining.
const OUTPUTS_MAX: usize = 4_096;

/// A failback under way.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HandBack {
    peer: String,
    again_at: Millis,
}

/// Where this broker stands with the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not holding the lock; asks for it at `next_try_at`.
    Passive {
        next_try_at: Millis,
    },
    /// Asked for the lock; waiting for the answer.
    Acquiring,
    /// Holds the lock under `epoch`; reading the state to decide.
    Reading {
        epoch: u64,
    },
    /// Holds the lock; writing the state that makes it the active one.
    /// Not accepting clients yet.
    Activating {
        epoch: u64,
    },
    /// Accepting clients under `epoch`.
    Active {
        epoch: u64,
    },
    Stopped,
}

/// The in-sync set while active: what the lock service has, what is being
/// written, and what this broker wants next.
#[derive(Clone, Debug, Default)]
struct InSync {
    /// As the lock service confirmed it.
    confirmed: BTreeSet<String>,
    /// Written, not yet confirmed.
    pending: Option<BTreeSet<String>>,
    /// The set to write next (peers silent for the timeout removed, caught
    /// up peers added).
    desired: BTreeSet<String>,
    /// After an unanswered write: read the state again at this time.
    reread_at: Option<Millis>,
    /// A re-read is out.
    rereading: bool,
}

#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    phase: Phase,
    now: Millis,
    fence: EpochFence,
    accepting: bool,
    in_sync: InSync,
    /// Peers that reported caught up during this acquisition.
    caught_up: BTreeSet<String>,
    last_heard: BTreeMap<String, Millis>,
    /// The peers receipts wait for, as last announced.
    required: Option<BTreeSet<String>>,
    /// Peers that said they prefer the active role (primaries with failback).
    prefer_active: BTreeSet<String>,
    /// Failback under way (active): handing the role back to this peer;
    /// [`Output::HandBack`] is given again at `again_at` until the node
    /// releases.
    hand_back: Option<HandBack>,
    /// Another broker's stream was seen while passive (for the failback line).
    other_stream_seen: bool,
    outputs: VecDeque<Output>,
    #[cfg(feature = "planted-bugs")]
    planted: Option<super::types::PlantedBug>,
}

impl Coordinator {
    /// `fence` carries the newest epoch this broker already knows (from its
    /// journal); the first tick asks for the lock.
    pub fn new(config: CoordinatorConfig, fence: EpochFence) -> Coordinator {
        debug_assert!(config.validate().is_ok(), "validated by the caller");
        Coordinator {
            config,
            phase: Phase::Passive { next_try_at: 0 },
            now: 0,
            fence,
            accepting: false,
            in_sync: InSync::default(),
            caught_up: BTreeSet::new(),
            last_heard: BTreeMap::new(),
            required: None,
            prefer_active: BTreeSet::new(),
            hand_back: None,
            other_stream_seen: false,
            outputs: VecDeque::new(),
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }

    /// Switches a planted bug on (simulator tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: super::types::PlantedBug) {
        self.planted = Some(bug);
    }

    #[cfg(feature = "planted-bugs")]
    fn planted_take_over(&self) -> bool {
        self.planted == Some(super::types::PlantedBug::TakeOverOutOfSync)
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn planted_take_over(&self) -> bool {
        false
    }

    #[cfg(feature = "planted-bugs")]
    fn planted_old_epochs(&self) -> bool {
        self.planted == Some(super::types::PlantedBug::ApplyOldEpochEvents)
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn planted_old_epochs(&self) -> bool {
        false
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Adds a sync peer whose name was learned at run time (a mirror link
    /// learns its peer's name at the handshake; the configuration names
    /// peers by address). `Ok(true)`: newly learned; `Ok(false)`: already a
    /// peer. Refused: a bad name, this node's own, or more than
    /// [`super::types::PEERS_MAX`] peers. A learned peer is like a configured
    /// one: its news counts from now on, and it joins the in-sync set only
    /// once it has caught up.
    pub fn learn_peer(&mut self, name: String) -> Result<bool, CoordinatorConfigError> {
        self.config.check_new_peer(&name)?;
        Ok(self.config.peers.insert(name))
    }

    /// Asks for the lock no earlier than `at` (after handing the active
    /// role back: the returning primary takes it first). Passive only.
    pub fn hold_off(&mut self, at: Millis) {
        if let Phase::Passive { next_try_at } = &mut self.phase {
            *next_try_at = (*next_try_at).max(at);
        }
    }

    /// The peer the active role is being handed back to (failback), if any.
    pub fn handing_back_to(&self) -> Option<&str> {
        self.hand_back.as_ref().map(|h| h.peer.as_str())
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    pub fn fence(&self) -> &EpochFence {
        &self.fence
    }

    /// The epoch of the lock this broker holds, if it holds it.
    pub fn held_epoch(&self) -> Option<u64> {
        match self.phase {
            Phase::Reading { epoch } | Phase::Activating { epoch } | Phase::Active { epoch } => {
                Some(epoch)
            }
            _ => None,
        }
    }

    /// The in-sync set the lock service confirmed (active only).
    pub fn confirmed_in_sync(&self) -> Option<&BTreeSet<String>> {
        matches!(self.phase, Phase::Active { .. }).then_some(&self.in_sync.confirmed)
    }

    /// The peers a client receipt waits for now (active only): every peer
    /// in the confirmed set, in a set being written, or about to be.
    pub fn required_acks(&self) -> Option<BTreeSet<String>> {
        if !matches!(self.phase, Phase::Active { .. }) {
            return None;
        }
        let s = &self.in_sync;
        let mut all: BTreeSet<String> = s.confirmed.union(&s.desired).cloned().collect();
        all.extend(s.pending.iter().flatten().cloned());
        all.remove(&self.config.node);
        Some(all)
    }

    /// Whether a mirror event stamped `epoch` may be applied (see
    /// [`EpochFence::admit`]); a newer epoch is noted, and steps an active
    /// broker down.
    pub fn admit(&mut self, now: Millis, epoch: u64) -> Result<(), StaleEpoch> {
        if !self.planted_old_epochs() {
            self.fence.would_admit(epoch)?;
        }
        self.handle(now, Input::EpochSeen { epoch });
        Ok(())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        match self.phase {
            Phase::Passive { next_try_at } => Some(next_try_at),
            Phase::Active { .. } => {
                let peers = self
                    .in_sync
                    .desired
                    .iter()
                    .filter(|p| **p != self.config.node)
                    .filter_map(|p| self.last_heard.get(p))
                    .map(|t| t.saturating_add(self.config.peer_timeout_ms));
                let reread = self.in_sync.reread_at.filter(|_| !self.in_sync.rereading);
                let again = self.hand_back.as_ref().map(|h| h.again_at);
                peers.chain(reread).chain(again).min()
            }
            _ => None,
        }
    }

    pub fn handle(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.on_tick(),
            Input::Acquired { epoch } => self.on_acquired(epoch),
            Input::Busy => self.on_not_acquired(None),
            Input::AcquireFailed { reason } => self.on_not_acquired(Some(reason)),
            Input::StateRead { state } => self.on_state_read(state),
            Input::StateWritten { epoch } => self.on_written(epoch),
            Input::StateWriteRefused { epoch, why } => self.on_refused(epoch, why),
            Input::Lost { epoch, reason } => {
                if self.held_epoch() == Some(epoch) {
                    self.step_down(Event::LockLost { epoch, reason });
                }
            }
            Input::PeerHeard { peer } => {
                if self.config.peers.contains(&peer) {
                    self.last_heard.insert(peer, self.now);
                }
            }
            Input::PeerCaughtUp { peer } => self.on_caught_up(peer),
            Input::EpochSeen { epoch } => {
                if matches!(self.phase, Phase::Passive { .. } | Phase::Acquiring) {
                    self.other_stream_seen = true;
                }
                self.fence.observe(epoch);
                if let Some(ours) = self.held_epoch().filter(|ours| epoch > *ours) {
                    self.step_down(Event::NewerEpochSeen { epoch, ours });
                }
            }
            Input::PeerPreference {
                peer,
                prefers_active,
            } => {
                if self.config.peers.contains(&peer) {
                    if prefers_active {
                        self.prefer_active.insert(peer);
                    } else {
                        self.prefer_active.remove(&peer);
                    }
                }
            }
            Input::Shutdown => self.on_shutdown(),
        }
        if let Phase::Active { epoch } = self.phase {
            self.maybe_hand_back(epoch);
        }
        assert!(self.outputs.len() <= OUTPUTS_MAX, "outputs not drained");
        self.check_invariants();
    }

    fn push(&mut self, out: Output) {
        self.outputs.push_back(out);
    }

    fn event(&mut self, e: Event) {
        self.push(Output::Event(e));
    }

    fn passive_later(&mut self) {
        self.phase = Phase::Passive {
            next_try_at: self.now.saturating_add(self.config.check_period_ms),
        };
    }

    fn on_tick(&mut self) {
        match self.phase {
            Phase::Passive { next_try_at } if self.now >= next_try_at => {
                self.phase = Phase::Acquiring;
                self.push(Output::Acquire);
            }
            Phase::Active { epoch } => self.tick_active(epoch),
            _ => {}
        }
    }

    fn on_acquired(&mut self, epoch: u64) {
        if self.phase != Phase::Acquiring {
            // Not asked for (stopped meanwhile): give it back.
            self.push(Output::Release);
            return;
        }
        let newest = self.fence.newest();
        if !self.fence.observe(epoch) {
            self.event(Event::EpochNotNewer { epoch, newest });
            self.push(Output::Release);
            self.passive_later();
            return;
        }
        self.event(Event::Acquired { epoch });
        self.caught_up.clear();
        self.phase = Phase::Reading { epoch };
        self.push(Output::ReadState);
    }

    fn on_not_acquired(&mut self, reason: Option<String>) {
        if self.phase != Phase::Acquiring {
            return;
        }
        if let Some(reason) = reason {
            self.event(Event::AcquireFailed { reason });
        }
        self.passive_later();
    }

    fn on_state_read(&mut self, state: Option<LockState>) {
        match self.phase {
            Phase::Reading { epoch } => self.decide(epoch, state),
            Phase::Active { epoch } if self.in_sync.rereading => self.reread(epoch, state),
            _ => {}
        }
    }

    /// Holding the lock under `epoch`: take the active role, or not.
    fn decide(&mut self, epoch: u64, state: Option<LockState>) {
        let node = self.config.node.clone();
        if let Some(s) = &state {
            self.fence.observe(s.epoch);
            if s.epoch >= epoch {
                self.event(Event::StateFromTheFuture {
                    state_epoch: s.epoch,
                    epoch,
                });
                self.push(Output::Release);
                self.passive_later();
                return;
            }
            if !s.in_sync.is_empty() && !s.in_sync.contains(&node) && !self.planted_take_over() {
                if !self.config.force_active {
                    self.event(Event::NotInSync {
                        epoch: s.epoch,
                        in_sync: s.in_sync.clone(),
                    });
                    self.push(Output::Release);
                    self.passive_later();
                    return;
                }
                self.event(Event::ForcedActive {
                    epoch: s.epoch,
                    in_sync: s.in_sync.clone(),
                });
            }
        }
        let mut in_sync = self.caught_up.clone();
        in_sync.insert(node);
        self.phase = Phase::Activating { epoch };
        self.write(epoch, in_sync);
    }

    fn write(&mut self, epoch: u64, in_sync: BTreeSet<String>) {
        assert!(
            in_sync.contains(&self.config.node),
            "a written in-sync set holds its writer"
        );
        assert_eq!(self.held_epoch(), Some(epoch), "writes under the held lock");
        self.in_sync.pending = Some(in_sync.clone());
        self.push(Output::WriteState { epoch, in_sync });
    }

    fn on_written(&mut self, epoch: u64) {
        if self.held_epoch() != Some(epoch) {
            return;
        }
        let Some(written) = self.in_sync.pending.take() else {
            return;
        };
        match self.phase {
            Phase::Activating { .. } => {
                self.phase = Phase::Active { epoch };
                for p in written.iter().filter(|p| **p != self.config.node) {
                    self.last_heard.insert(p.clone(), self.now);
                }
                // Peers that caught up while the activation was written
                // join with the next write.
                let mut desired = written.clone();
                desired.extend(self.caught_up.iter().cloned());
                self.in_sync.desired = desired;
                self.in_sync.confirmed = written.clone();
                self.in_sync.reread_at = None;
                self.in_sync.rereading = false;
                self.announce_required(epoch);
                self.event(Event::Active {
                    epoch,
                    in_sync: written,
                });
                if self.config.prefers_active() && self.other_stream_seen {
                    self.event(Event::TookBack { epoch });
                }
                self.accepting = true;
                self.push(Output::StartAccepting { epoch });
                self.maybe_write(epoch);
            }
            Phase::Active { .. } => {
                self.confirm(epoch, written);
                self.maybe_write(epoch);
            }
            _ => {}
        }
    }

    /// The lock service has `now_in_sync`: report who left and joined.
    fn confirm(&mut self, epoch: u64, now_in_sync: BTreeSet<String>) {
        let before = std::mem::take(&mut self.in_sync.confirmed);
        for peer in before.difference(&now_in_sync) {
            self.outputs.push_back(Output::Event(Event::PeerLeft {
                peer: peer.clone(),
                epoch,
            }));
        }
        for peer in now_in_sync.difference(&before) {
            self.outputs.push_back(Output::Event(Event::PeerJoined {
                peer: peer.clone(),
                epoch,
            }));
        }
        self.in_sync.confirmed = now_in_sync;
        self.announce_required(epoch);
    }

    fn announce_required(&mut self, epoch: u64) {
        let now = self.required_acks();
        if now.is_some() && now != self.required {
            let peers = now.clone().unwrap_or_default();
            self.push(Output::RequiredAcks { epoch, peers });
        }
        self.required = now;
    }

    fn maybe_write(&mut self, epoch: u64) {
        let s = &self.in_sync;
        if s.pending.is_some() || s.rereading || s.reread_at.is_some() || s.desired == s.confirmed {
            return;
        }
        let desired = s.desired.clone();
        self.write(epoch, desired);
    }

    fn on_refused(&mut self, epoch: u64, why: WriteRefusal) {
        if self.held_epoch() != Some(epoch) || self.in_sync.pending.is_none() {
            return;
        }
        match (why, &self.phase) {
            (WriteRefusal::Unavailable, Phase::Active { .. }) => {
                // It may have been written: read it back before going on.
                self.in_sync.pending = None;
                self.in_sync.reread_at = Some(self.now.saturating_add(self.config.check_period_ms));
                self.event(Event::WriteRefused { epoch, why });
            }
            _ => {
                self.in_sync.pending = None;
                self.step_down(Event::WriteRefused { epoch, why });
            }
        }
    }

    fn reread(&mut self, epoch: u64, state: Option<LockState>) {
        self.in_sync.rereading = false;
        self.in_sync.reread_at = None;
        match state {
            Some(s) if s.epoch == epoch && s.in_sync.contains(&self.config.node) => {
                self.confirm(epoch, s.in_sync);
                self.maybe_write(epoch);
            }
            Some(s) if s.epoch > epoch => self.step_down(Event::NewerEpochSeen {
                epoch: s.epoch,
                ours: epoch,
            }),
            _ => self.step_down(Event::WriteRefused {
                epoch,
                why: WriteRefusal::StaleVersion,
            }),
        }
    }

    fn tick_active(&mut self, epoch: u64) {
        if let Some(at) = self.in_sync.reread_at {
            if self.now >= at && !self.in_sync.rereading {
                self.in_sync.rereading = true;
                self.push(Output::ReadState);
            }
        }
        let timeout = self.config.peer_timeout_ms;
        let silent: Vec<(String, Millis)> = self
            .in_sync
            .desired
            .iter()
            .filter(|p| **p != self.config.node)
            .filter_map(|p| {
                let heard = *self.last_heard.get(p)?;
                let silent_ms = self.now.saturating_sub(heard);
                (silent_ms >= timeout).then(|| (p.clone(), silent_ms))
            })
            .collect();
        for (peer, silent_ms) in silent {
            self.in_sync.desired.remove(&peer);
            self.caught_up.remove(&peer);
            self.event(Event::PeerSilent { peer, silent_ms });
        }
        self.maybe_write(epoch);
    }

    fn on_caught_up(&mut self, peer: String) {
        if !self.config.peers.contains(&peer) {
            return;
        }
        match self.phase {
            Phase::Reading { .. } | Phase::Activating { .. } => {
                self.caught_up.insert(peer);
            }
            Phase::Active { epoch } => {
                self.last_heard.insert(peer.clone(), self.now);
                if self.in_sync.desired.insert(peer.clone()) {
                    self.caught_up.insert(peer);
                    // Receipts wait for it from now on, before the write.
                    self.announce_required(epoch);
                    self.maybe_write(epoch);
                }
            }
            _ => {}
        }
    }

    /// Leave the lock at once: close the listener and every client, give
    /// the lock back, ask again after a check period.
    fn step_down(&mut self, why: Event) {
        self.event(why);
        self.drop_role();
        self.passive_later();
    }

    fn drop_role(&mut self) {
        if self.accepting {
            self.accepting = false;
            self.push(Output::StopAccepting);
        }
        if self.held_epoch().is_some() {
            self.push(Output::Release);
        }
        self.in_sync = InSync::default();
        self.caught_up.clear();
        self.required = None;
        self.hand_back = None;
    }

    fn on_shutdown(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        // An acquisition still out is released when its answer comes.
        self.drop_role();
        self.phase = Phase::Stopped;
        self.event(Event::Stopped);
        self.push(Output::Stopped);
    }

    /// Failback, on the active broker: a peer that prefers the active role
    /// (a primary with failback allowed) and that the lock service lists in
    /// the in-sync set of this epoch gets it back, if this broker is a
    /// backup. Only a settled set counts (no write or re-read out, the peer
    /// not dropped meanwhile): the peer then holds every receipted change,
    /// and the in-sync rule lets it take the lock once released. Given
    /// again every check period until the node releases (it acts on it
    /// only once serving); dropped if the peer is no longer in sync.
    fn maybe_hand_back(&mut self, epoch: u64) {
        if !self.config.hands_back() {
            return;
        }
        let s = &self.in_sync;
        let settled = s.pending.is_none() && s.reread_at.is_none() && !s.rereading;
        let candidate = self
            .prefer_active
            .iter()
            .find(|p| settled && s.confirmed.contains(*p) && s.desired.contains(*p))
            .cloned();
        let Some(peer) = candidate else {
            self.hand_back = None;
            return;
        };
        let period = self.config.check_period_ms;
        match &mut self.hand_back {
            Some(h) if h.peer == peer => {
                if self.now >= h.again_at {
                    h.again_at = self.now.saturating_add(period);
                    self.push(Output::HandBack { epoch, peer });
                }
            }
            _ => {
                self.hand_back = Some(HandBack {
                    peer: peer.clone(),
                    again_at: self.now.saturating_add(period),
                });
                self.event(Event::HandingBack {
                    peer: peer.clone(),
                    epoch,
                });
                self.push(Output::HandBack { epoch, peer });
            }
        }
    }

    fn check_invariants(&self) {
        if self.accepting {
            let Phase::Active { epoch } = self.phase else {
                panic!("accepting outside the active phase: {:?}", self.phase);
            };
            assert!(
                self.in_sync.confirmed.contains(&self.config.node),
                "active outside its own confirmed in-sync set"
            );
            assert!(self.fence.newest() >= epoch);
        }
        if let Some(h) = &self.hand_back {
            assert!(
                matches!(self.phase, Phase::Active { .. })
                    && self.in_sync.confirmed.contains(&h.peer)
                    && self.config.hands_back(),
                "handing back outside the active phase or to a peer not in sync"
            );
        }
        if let Some(e) = self.held_epoch() {
            assert!(self.fence.newest() >= e);
        }
    }
}
