//! The sans-IO node: one [`Node`] glues STOMP sessions, the broker, the
//! journal pipeline and HA activation together.
//!
//! ```text
//! node.handle(now, Input::Received { conn, bytes });
//! while let Some(out) = node.poll_output() { /* do it */ }
//! if let Some(at) = node.next_deadline() { /* call handle(at, Input::Tick) then */ }
//! ```
//!
//! The driver promises: appends complete (durable, failed or fenced) in the
//! order they were issued; `ConnRequest::Close` flushes what was sent before
//! it; after `ConnRequest::Close` the node has already forgotten the
//! connection.

mod events;
mod pipeline;
mod ports;
mod session;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use events::Event;
use pipeline::{Pending, Work};
pub use ports::{
    AcceptRequest, ConnEvent, ConnRequest, Input, JournalEvent, JournalRequest, LockEvent,
    LockRequest, Output,
};
use session::Conn;
pub use session::DUPLICATE_ID_HEADER;

use crate::broker::{Broker, BrokerConfig, DestinationConfig};
use crate::ha::{AfterDrain, HaState, Role};
use crate::ids::{ConnId, IdGen, Ticket};
use crate::journal::{Entry, Record};
use crate::protocol::stomp::Limits;
use crate::Millis;

/// Everything a node is configured with. Time and randomness are not here:
/// they arrive as inputs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Name written into activation records and logs.
    pub node_id: String,
    pub role: Role,
    /// A returning primary takes the live role back from a backup.
    pub allow_failback: bool,
    pub limits: Limits,
    pub destinations: DestinationConfig,
    pub broker: BrokerConfig,
    /// Heart-beat interval the server offers and asks for (ms); 0 disables.
    pub heartbeat_ms: u64,
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout_ms: u64,
    /// Frames of one connection waiting for the journal before its reading pauses.
    pub conn_inflight_max: usize,
    /// Open transactions per connection.
    pub transactions_per_conn_max: usize,
    /// Frames in one transaction.
    pub transaction_frames_max: usize,
    /// Body bytes in one transaction.
    pub transaction_bytes_max: usize,
    /// How long a failback or shutdown waits for pending journal work.
    pub drain_timeout_ms: u64,
    /// Pause before asking for the lock again after a failed activation.
    pub activation_retry_ms: u64,
    /// A deliberate bug (simulator self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// Deliberate bugs the simulator's checker must catch. They can only be
/// switched on with the `planted-bugs` feature (simulator tests).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Answer sends (RECEIPT) and apply acks before the journal says durable.
    ReceiptBeforeDurable,
    /// Go live after the first chunk of the journal instead of its end.
    AcceptBeforeLoaded,
    /// Journal the ack of a client-acknowledged message when it is delivered,
    /// not when the client's ACK is durable.
    RemoveBeforeAckDurable,
    /// Keep the previous activation's epoch, so ids repeat.
    ReuseIds,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: "halyard".into(),
            role: Role::Primary,
            allow_failback: false,
            limits: Limits::default(),
            destinations: DestinationConfig::default(),
            broker: BrokerConfig::default(),
            heartbeat_ms: 10_000,
            connect_timeout_ms: 30_000,
            conn_inflight_max: 10_000,
            transactions_per_conn_max: 64,
            transaction_frames_max: 100_000,
            transaction_bytes_max: 64 * 1024 * 1024,
            drain_timeout_ms: 5_000,
            activation_retry_ms: 1_000,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

/// The sans-IO broker node.
pub struct Node {
    config: NodeConfig,
    state: HaState,
    /// Has been a backup since it last was live (for "backup is now live").
    announced_backup: bool,
    epoch: u32,
    ids: IdGen,
    broker: Broker,
    conns: BTreeMap<ConnId, Conn>,
    pipeline: VecDeque<Pending>,
    next_ticket: u64,
    outputs: VecDeque<Output>,
    now: Millis,
    /// Journal entries with nobody waiting on them (auto-acks, tombstones),
    /// collected during one `handle` and appended as one batch.
    housekeeping: Vec<Entry>,
    housekeeping_volatile: Vec<crate::broker::RefKey>,
    /// (address, duplicate id) of sends on their way to the journal.
    planned_dups: BTreeSet<(String, String)>,
    accepting: bool,
    loaded_entries: u64,
}

impl Node {
    pub fn new(config: NodeConfig) -> Node {
        let broker = Broker::new(config.broker.clone());
        Node {
            config,
            state: HaState::NotStarted,
            announced_backup: false,
            epoch: 0,
            ids: IdGen::new(0),
            broker,
            conns: BTreeMap::new(),
            pipeline: VecDeque::new(),
            next_ticket: 1,
            outputs: VecDeque::new(),
            now: 0,
            housekeeping: Vec::new(),
            housekeeping_volatile: Vec::new(),
            planned_dups: BTreeSet::new(),
            accepting: false,
            loaded_entries: 0,
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Is this planted bug switched on? (Always false without the feature.)
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn bug(&self, bug: PlantedBug) -> bool {
        self.config.planted_bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    #[inline(always)]
    pub(crate) fn bug(&self, _bug: PlantedBug) -> bool {
        false
    }

    pub fn state(&self) -> HaState {
        self.state
    }

    /// Activation epoch of the current (or last) live period.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn is_live(&self) -> bool {
        self.state == HaState::Live
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Journal batches issued and not yet answered.
    pub fn pending_appends(&self) -> usize {
        self.pipeline
            .iter()
            .filter(|p| p.ticket.is_some() && !p.done)
            .count()
    }

    /// Verifies the node's bookkeeping (broker state, journal pipeline); the
    /// simulator calls it after every step in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.broker.check_invariants()?;
        let mut last: Option<Ticket> = None;
        for p in &self.pipeline {
            if let Some(t) = p.ticket {
                if last.is_some_and(|l| l >= t) {
                    return Err(format!(
                        "pipeline tickets out of order: {last:?} then {t:?}"
                    ));
                }
                last = Some(t);
            }
        }
        Ok(())
    }

    /// Applies one input. Effects are queued for [`Node::poll_output`].
    pub fn handle(&mut self, now: Millis, input: Input) {
        debug_assert!(now >= self.now, "time went backwards: {now} < {}", self.now);
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.on_tick(),
            Input::Start => self.on_start(),
            Input::Shutdown => self.on_shutdown(),
            Input::Conn(ConnEvent::Opened { conn }) => self.on_opened(conn),
            Input::Conn(ConnEvent::Received { conn, bytes }) => self.on_received(conn, &bytes),
            Input::Conn(ConnEvent::Flushed { conn, bytes }) => {
                self.broker.flushed(conn, bytes);
            }
            Input::Conn(ConnEvent::Closed { conn }) => self.on_closed(conn),
            Input::Journal(ev) => self.on_journal(ev),
            Input::Lock(ev) => self.on_lock(ev),
        }
        self.after_input();
    }

    /// The next effect to carry out, in order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the node next needs `Input::Tick`.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Millis> {
        let mut d: Option<Millis> = None;
        let mut at = |t: Millis| d = Some(d.map_or(t, |x| x.min(t)));
        match self.state {
            HaState::Waiting { retry_at: Some(t) } => at(t),
            HaState::Draining { until, .. } => at(until),
            _ => {}
        }
        for c in self.conns.values() {
            if let Some(t) = c.deadline(&self.config) {
                at(t);
            }
        }
        d
    }

    // ------------------------------------------------------------------ HA

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn on_start(&mut self) {
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

    fn on_lock(&mut self, ev: LockEvent) {
        match ev {
            LockEvent::Acquired => match self.state {
                HaState::Waiting { .. } => {
                    self.event(Event::LiveLockObtained);
                    self.state = HaState::Loading;
                    self.broker = Broker::new(self.config.broker.clone());
                    self.broker.begin_load();
                    self.loaded_entries = 0;
                    self.outputs
                        .push_back(Output::Journal(JournalRequest::Open));
                }
                HaState::Stopped => self.outputs.push_back(Output::Lock(LockRequest::Release)),
                _ => {}
            },
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

    fn on_journal(&mut self, ev: JournalEvent) {
        match ev {
            JournalEvent::Loaded { entries } => {
                if self.state != HaState::Loading {
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
                if self.state != HaState::Loading {
                    return;
                }
                self.activate();
            }
            JournalEvent::OpenFailed { reason } => {
                if self.state == HaState::Loading {
                    self.step_down(Event::JournalOpenFailed { reason });
                }
            }
            JournalEvent::Durable { ticket } => self.on_durable(ticket),
            JournalEvent::Failed { ticket, reason } => {
                if self.owns_ticket(ticket) {
                    self.step_down(Event::JournalFailed { reason });
                }
            }
            JournalEvent::Fenced { ticket, by_epoch } => {
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

    fn owns_ticket(&self, ticket: Ticket) -> bool {
        self.pipeline.iter().any(|p| p.ticket == Some(ticket))
    }

    /// Journal read: pick the next epoch and write it down before serving.
    fn activate(&mut self) {
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

    fn became_live(&mut self, epoch: u32) {
        self.state = HaState::Live;
        let was_backup = self.announced_backup;
        self.announced_backup = false;
        self.event(Event::Live { epoch, was_backup });
        self.accepting = true;
        self.outputs.push_back(Output::Accept(AcceptRequest::Start));
    }

    /// Leave the live role at once: fenced, journal failure or lock lost.
    /// Pending work is dropped unanswered; clients resend what has no receipt.
    fn step_down(&mut self, why: Event) {
        self.event(why);
        self.drop_live_state();
        self.outputs.push_back(Output::Lock(LockRequest::Release));
        self.state = HaState::Waiting {
            retry_at: Some(self.now + self.config.activation_retry_ms),
        };
        self.event(Event::SteppedDown);
    }

    fn drop_live_state(&mut self) {
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
        self.pipeline.clear();
        self.housekeeping.clear();
        self.housekeeping_volatile.clear();
        self.planned_dups.clear();
        self.broker = Broker::new(self.config.broker.clone());
        self.outputs
            .push_back(Output::Journal(JournalRequest::Close));
    }

    fn begin_drain(&mut self, then: AfterDrain) {
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

    fn maybe_finish_drain(&mut self, timed_out: bool) {
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

    fn on_shutdown(&mut self) {
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

    fn on_tick(&mut self) {
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
        self.check_heartbeats();
    }

    // ------------------------------------------------------------ pipeline

    fn submit(&mut self, entries: Vec<Entry>, work: Work) {
        let ticket = if entries.is_empty() {
            None
        } else {
            let t = Ticket(self.next_ticket);
            self.next_ticket += 1;
            self.outputs
                .push_back(Output::Journal(JournalRequest::Append {
                    ticket: t,
                    entries: entries.clone(),
                }));
            Some(t)
        };
        if let Some(c) = work.conn().and_then(|c| self.conns.get_mut(&c)) {
            c.inflight += 1;
        }
        let ticket_done = ticket.is_none()
            || (self.bug(PlantedBug::ReceiptBeforeDurable) && self.state == HaState::Live);
        self.pipeline.push_back(Pending {
            ticket,
            done: ticket_done,
            entries,
            work,
        });
        // Work without a journal batch still waits for its turn.
        self.complete_ready();
    }

    fn on_durable(&mut self, ticket: Ticket) {
        if let Some(p) = self.pipeline.iter_mut().find(|p| p.ticket == Some(ticket)) {
            p.done = true;
        }
        self.complete_ready();
    }

    fn complete_ready(&mut self) {
        while self.pipeline.front().is_some_and(|p| p.done) {
            let Some(p) = self.pipeline.pop_front() else {
                break;
            };
            for e in &p.entries {
                self.broker.apply(e);
            }
            if let Some(c) = p.work.conn().and_then(|c| self.conns.get_mut(&c)) {
                c.inflight = c.inflight.saturating_sub(1);
            }
            self.finish_work(p.work);
        }
        if matches!(self.state, HaState::Draining { .. }) {
            self.maybe_finish_drain(false);
        }
    }

    /// Runs after every input: deliver, batch housekeeping, resume readers.
    fn after_input(&mut self) {
        // Nothing may be written before the activation record.
        if !matches!(
            self.state,
            HaState::Activating | HaState::Live | HaState::Draining { .. }
        ) {
            return;
        }
        // Loop because completing work can make deliveries, auto-acks and
        // tombstones, which complete more work when nothing is journaled.
        for _ in 0..8 {
            if matches!(self.state, HaState::Live | HaState::Draining { .. }) {
                self.dispatch();
            }
            for (id, queues) in self.broker.take_dead() {
                self.housekeeping
                    .extend(Broker::tombstones_for(id, &queues));
            }
            for key in self.broker.take_dead_dups() {
                self.housekeeping.push(Entry::Tombstone(key));
            }
            if self.housekeeping.is_empty() && self.housekeeping_volatile.is_empty() {
                break;
            }
            let entries = std::mem::take(&mut self.housekeeping);
            let volatile = std::mem::take(&mut self.housekeeping_volatile);
            self.submit(entries, Work::Housekeeping { volatile });
        }
        self.resume_readers();
    }
}
