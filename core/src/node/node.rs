//! The [`Node`] itself: its state, and the sans-IO face a driver uses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::config::{NodeConfig, PlantedBug};
use super::conn::Conn;
use super::events::Event;
use super::ops::SessionAction;
use super::ports::{ConnEvent, Input, Output};
use super::stats::NodeCounters;
use super::work::Pending;
use crate::broker::{Broker, RefKey};
use crate::ha::HaState;
use crate::ids::{ConnId, Id, IdGen, Ticket};
use crate::journal::Entry;
use crate::security::Principal;
use crate::Millis;

/// The sans-IO broker node.
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) state: HaState,
    /// Has been a backup since it last was live (for "backup is now live").
    pub(crate) announced_backup: bool,
    /// A peer that says it is live (fenced preemption's peer port), and its
    /// epoch: the lock, if it comes to us, is left to it.
    pub(crate) live_peer: Option<(String, u32)>,
    pub(crate) epoch: u32,
    pub(crate) ids: IdGen,
    pub(crate) broker: Broker,
    /// The broker of a live period just left, not yet freed: freeing 100,000
    /// messages takes tens of milliseconds, which a stopping or stepping-down
    /// node should not spend before its outputs (the lock release, the
    /// closed listener) are carried out. The driver takes it
    /// ([`Node::take_retired_broker`]) to free elsewhere; else the next input
    /// frees it.
    pub(crate) retired_broker: Option<Broker>,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    /// Work waiting for the journal, in the order it was issued.
    pub(crate) pipeline: VecDeque<Pending>,
    pub(crate) next_ticket: u64,
    /// The last ticket answered (durable, failed or fenced): the driver
    /// answers in issue order, and the node checks that it does.
    pub(crate) last_answered: Option<Ticket>,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) now: Millis,
    /// Journal entries with nobody waiting on them (auto-acks, tombstones),
    /// collected during one `handle` and appended as one batch.
    pub(crate) housekeeping: Vec<Entry>,
    pub(crate) housekeeping_volatile: Vec<RefKey>,
    /// Non-journaled references to move (expiry) with the housekeeping batch.
    pub(crate) housekeeping_moves: Vec<(RefKey, Id)>,
    /// When the next expiry scan step is due (while messages can expire).
    pub(crate) expiry_scan_at: Millis,
    /// (address, duplicate id) of sends on their way to the journal.
    pub(crate) planned_dups: BTreeSet<(String, String)>,
    pub(crate) accepting: bool,
    pub(crate) loaded_entries: u64,
    /// Journal opens asked for and not answered yet (`Ready` or
    /// `OpenFailed`). The driver answers opens in order, each after its
    /// `Loaded`s; while more than one is unanswered, what it sends belongs
    /// to an open this node gave up (it stepped down while loading).
    pub(crate) opens_unanswered: u32,
    /// Connections whose sessions heard completions during this input.
    pub(crate) flush_pending: BTreeSet<ConnId>,
    /// Actions adapters pushed, waiting to be carried out (reused buffer).
    pub(crate) actions: Vec<SessionAction>,
    /// What `stats` reports (see `stats.rs`).
    pub(crate) counters: NodeCounters,
    /// The epoch that fenced this node, until it is live again.
    pub(crate) fenced_by: Option<u32>,
    /// The Kafka bridge: the next offset planned per (topic, partition)
    /// this live period (ahead of the journaled positions while batches
    /// are in flight).
    pub(crate) bridge_next: BTreeMap<(String, u32), u64>,
    /// What the bridge's reader was last told about subscriptions (the
    /// broker's queue generation then, and the addresses); `None` while
    /// the reader is stopped.
    pub(crate) bridge_reported: Option<(u64, Vec<String>)>,
    /// Who each logged-in connection is (with a security file).
    pub(crate) principals: BTreeMap<ConnId, Principal>,
    /// Logins whose password the driver is checking: the user name asked for.
    pub(crate) logins: BTreeMap<ConnId, String>,
    /// The disk limit: may producers add messages now.
    pub(crate) admission: super::admission::Admission,
}

impl Node {
    pub fn new(config: NodeConfig) -> Node {
        let broker = Broker::new(config.broker_config());
        Node {
            config,
            state: HaState::NotStarted,
            announced_backup: false,
            live_peer: None,
            epoch: 0,
            ids: IdGen::new(0),
            broker,
            retired_broker: None,
            conns: BTreeMap::new(),
            pipeline: VecDeque::new(),
            next_ticket: 1,
            last_answered: None,
            outputs: VecDeque::new(),
            now: 0,
            housekeeping: Vec::new(),
            housekeeping_volatile: Vec::new(),
            housekeeping_moves: Vec::new(),
            expiry_scan_at: 0,
            planned_dups: BTreeSet::new(),
            accepting: false,
            loaded_entries: 0,
            opens_unanswered: 0,
            actions: Vec::new(),
            flush_pending: BTreeSet::new(),
            counters: NodeCounters::default(),
            fenced_by: None,
            bridge_next: BTreeMap::new(),
            bridge_reported: None,
            principals: BTreeMap::new(),
            logins: BTreeMap::new(),
            admission: Default::default(),
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

    /// The broker state of the live period this node left, if not freed
    /// yet: a driver frees it off its loop (see `retired_broker`).
    pub fn take_retired_broker(&mut self) -> Option<Broker> {
        self.retired_broker.take()
    }

    pub fn is_live(&self) -> bool {
        self.state == HaState::Live
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
        // Freed here if the driver did not take it after the last input.
        self.retired_broker = None;
        match input {
            Input::Tick => self.on_tick(),
            Input::Start => self.on_start(),
            Input::Shutdown => self.on_shutdown(),
            Input::Conn(ConnEvent::Opened { conn }) => self.on_opened(conn),
            Input::Conn(ConnEvent::Received { conn, bytes }) => self.on_received(conn, bytes),
            Input::Conn(ConnEvent::Flushed { conn, bytes }) => {
                self.broker.flushed(conn, bytes);
            }
            Input::Conn(ConnEvent::Closed { conn }) => self.on_closed(conn),
            Input::Conn(ConnEvent::PasswordChecked { conn, ok }) => {
                self.on_password_checked(conn, ok)
            }
            Input::Conn(ConnEvent::Identified { conn, user }) => self.on_identified(conn, user),
            Input::Journal(ev) => self.on_journal(ev),
            Input::Journals(evs) => {
                for ev in evs {
                    self.on_journal(ev);
                }
            }
            Input::Lock(ev) => self.on_lock(ev),
            Input::Admin { id, op } => self.on_admin(id, op),
            Input::Bridge(ev) => self.on_bridge(ev),
            Input::Disk(usage) => self.on_disk(usage),
        }
        self.after_input();
        self.check_memory();
        self.flush_sessions();
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
        if let Some(t) = self.broker_deadline() {
            at(t);
        }
        d
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.count_event(&e);
        self.outputs.push_back(Output::Event(e));
    }
}
