//! Group commit for journal drivers, sans-IO.
//!
//! Every journal driver (the local segment-file journal, the Kafka journal,
//! the simulator's journal driver, the madsim journal task) does the same thing
//! around its I/O: it queues the node's [`JournalRequest`]s, writes the
//! appends that piled up while the last write was in flight as one group
//! (one fsync, one Kafka transaction), and answers every ticket. A
//! [`GroupCommit`] holds that part; the driver keeps only its I/O:
//!
//! ```text
//! commit.push(request);                      // every JournalRequest, in order
//! while let Some(step) = commit.poll_step() {
//!     if let Some(input) = commit.poll_answers() { /* send it to the node */ }
//!     match step {
//!         JournalStep::Open => { /* fence, send Loaded*; */ commit.opened() /* or open_failed(reason) */ }
//!         JournalStep::Write(group) => { /* write group.batches; */ commit.written() /* or write_failed / write_fenced */ }
//!         JournalStep::Close => { /* drop the writer */ }
//!         JournalStep::Read(ids) => { /* read them; */ commit.read_done(ids, found) /* or read_failed */ }
//!     }
//! }
//! if let Some(input) = commit.poll_answers() { /* send it to the node */ }
//! ```
//!
//! Requests are taken strictly in the order they were pushed: a group is the
//! appends at the head of the queue, up to the next `Open` or `Close` and
//! within [`GroupLimits`]; an `Open` or `Close` waits for the write in flight
//! before it; appends behind an `Open` wait for it to finish. Take the
//! answers ([`GroupCommit::poll_answers`], all ready ones as one input, or
//! [`GroupCommit::poll_event`] one by one) before carrying out a step, so
//! that the driver's own `Loaded` inputs never overtake earlier answers.
//!
//! # Answers, and what a failure does
//!
//! Every append is answered exactly once, and tickets are answered strictly
//! in the order they were issued (asserted):
//!
//! - A written group: `Durable` for each of its tickets.
//! - A failed or fenced write: the failed group and every append queued
//!   behind it are answered, in ticket order, and nothing more is written
//!   until the next `Open`. The first ticket of the group carries the
//!   outcome (`Failed { reason }`, or `Fenced { by_epoch }`); every later
//!   one, and every append that reaches the head of the queue before the
//!   next `Open`, is answered `Failed` with the same reason. A fencing is
//!   reported once because the node steps down on it (or, already stepped
//!   down, logs it once); the other tickets were not written either, and a
//!   node that stepped down ignores their `Failed`. Writing on after a
//!   failure could put a batch in the journal after one that is missing,
//!   which breaks "a batch is all in or all out, in order".
//! - An append that reaches the head while the journal is not open (never
//!   opened, closed, or the last open failed): `Failed { reason: "journal is
//!   not open" }`.
//! - `Close` answers nothing itself: appends before it are written first
//!   (requests are taken in order), appends after it before an `Open` are
//!   answered as above.
//! - `Open` answers `Ready` (after the driver sent `Loaded`*) or
//!   `OpenFailed { reason }`.
//!
//! A write is asked for only while the journal is open and no other write
//! is in flight (asserted): one group at a time keeps the order of batches
//! in the journal the order of tickets.
//!
//! # Reads (paging)
//!
//! A `Read` names paged messages, which are durable already, so reads are
//! not ordered with appends. They are carried out while the journal is open
//! and nothing else is in flight, at most one between two writes so that
//! the append path never waits for more than one bounded read (the node
//! asks for at most `PAGE_READ_IDS_MAX` messages at a time). Each is
//! answered by one `JournalEvent::Read`; while the journal is not open
//! (never opened, closed, broken) a read is answered at once with the
//! reason as its error.

use std::collections::VecDeque;

use bytes::Bytes;

use std::sync::Arc;

use super::codec::encode_entry;
use crate::bridge::OutRecord;
use crate::ids::{Id, Ticket};
use crate::message::Message;
use crate::node::{Input, JournalEvent, JournalRequest};

/// Why an append is answered `Failed` while no journal is open.
pub const NOT_OPEN_REASON: &str = "journal is not open";

/// Bounds on one group (one fsync, one transaction).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// Appends (tickets) in one group; at least 1.
    pub group_appends_max: usize,
    /// Encoded key and value bytes in one group. An append larger than this
    /// on its own is written alone.
    pub group_bytes_max: usize,
}

/// A journal entry encoded as the journal stores it: a key and a value, or
/// no value for a tombstone (a Kafka record with a null value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEntry {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl EncodedEntry {
    /// Key and value bytes.
    pub fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Bytes::len)
    }
}

/// What the driver carries out next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalStep {
    /// Drop any writer, fence older writers and read the journal to its end
    /// (sending `Loaded` inputs itself), then call [`GroupCommit::opened`]
    /// or [`GroupCommit::open_failed`].
    Open,
    /// Write each batch atomically, in order, after every earlier one; then
    /// call [`GroupCommit::written`], [`GroupCommit::write_failed`] or
    /// [`GroupCommit::write_fenced`].
    Write(WriteGroup),
    /// Drop the writer; nothing is reported back.
    Close,
    /// Read these messages' `MessageStored` records back; then call
    /// [`GroupCommit::read_done`] or [`GroupCommit::read_failed`].
    Read(Vec<Id>),
    /// Hand a copy of the journal, as of every write before this step, to
    /// the mirror link that asked with `token` (`open`: the journal is
    /// open; if not, tell the link there is none). Nothing is reported to
    /// the node.
    Snapshot { token: u64, open: bool },
}

/// Appends to write together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteGroup {
    /// The appends' tickets, in order (for logs; answers come from the
    /// [`GroupCommit`]).
    pub tickets: Vec<Ticket>,
    /// One batch per append, in ticket order.
    pub batches: Vec<Vec<EncodedEntry>>,
    /// The Kafka bridge's records of all batches, in ticket order: written
    /// in the same transaction (only a Kafka journal is given any).
    pub publish: Vec<OutRecord>,
    /// Key and value bytes of all batches (and bridged records).
    pub bytes: usize,
}

/// The appends at the head of the queue: what the next write would take.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NextGroup {
    pub appends: usize,
    pub bytes: usize,
    /// Nothing pushed now can join it: a limit is reached, or an `Open` or
    /// `Close` is queued behind it. A driver stops gathering requests then.
    pub sealed: bool,
}

#[derive(Debug)]
enum Waiting {
    Append {
        ticket: Ticket,
        batch: Vec<EncodedEntry>,
        publish: Vec<OutRecord>,
        bytes: usize,
    },
    Open,
    Close,
    Snapshot {
        token: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// No writer: never opened, closed, or the last open failed.
    Closed,
    /// An `Open` step is being carried out.
    Opening,
    /// Open, nothing in flight.
    Open,
    /// Open, this group is being written.
    Writing { tickets: Vec<Ticket> },
    /// Open, a read is being carried out.
    Reading,
    /// A write failed or was fenced: nothing is written until the next
    /// `Open`, and appends are answered `Failed` with this reason.
    Broken { reason: String },
}

/// The group-commit state of one journal driver. See the module docs.
#[derive(Debug)]
pub struct GroupCommit {
    limits: GroupLimits,
    queue: VecDeque<Waiting>,
    state: State,
    events: VecDeque<JournalEvent>,
    /// What the next write would take, kept up to date so that a driver
    /// gathering requests asks in O(1).
    next: NextGroup,
    /// The last ticket pushed and the last one answered: both only grow.
    last_pushed: Option<Ticket>,
    last_answered: Option<Ticket>,
    /// Reads waiting, oldest first, and whether one may go before the
    /// next write (one read between two writes).
    reads: VecDeque<Vec<Id>>,
    read_turn: bool,
}

impl GroupCommit {
    pub fn new(limits: GroupLimits) -> GroupCommit {
        assert!(
            limits.group_appends_max >= 1,
            "group_appends_max must be at least 1"
        );
        GroupCommit {
            limits,
            queue: VecDeque::new(),
            state: State::Closed,
            events: VecDeque::new(),
            next: NextGroup::default(),
            last_pushed: None,
            last_answered: None,
            reads: VecDeque::new(),
            read_turn: true,
        }
    }

    /// Queues a request from the node. Appends are encoded here, once.
    pub fn push(&mut self, request: JournalRequest) {
        let waiting = match request {
            JournalRequest::Append {
                ticket,
                entries,
                publish,
            } => {
                assert!(
                    self.last_pushed.is_none_or(|last| last < ticket),
                    "journal appends issued out of order: {:?} then {ticket}",
                    self.last_pushed
                );
                self.last_pushed = Some(ticket);
                let batch: Vec<EncodedEntry> = entries
                    .iter()
                    .map(|e| {
                        let (key, value) = encode_entry(e);
                        EncodedEntry { key, value }
                    })
                    .collect();
                let bytes = batch.iter().map(EncodedEntry::bytes).sum::<usize>()
                    + publish.iter().map(OutRecord::bytes).sum::<usize>();
                Waiting::Append {
                    ticket,
                    batch,
                    publish,
                    bytes,
                }
            }
            JournalRequest::Open => Waiting::Open,
            JournalRequest::Close => Waiting::Close,
            JournalRequest::Snapshot { token } => Waiting::Snapshot { token },
            JournalRequest::Read { ids } => {
                self.reads.push_back(ids);
                return;
            }
        };
        if !self.next.sealed {
            self.next = self.grow(self.next, &waiting);
        }
        self.queue.push_back(waiting);
    }

    /// The next step to carry out, or `None` while one is in flight or
    /// nothing is waiting. Appends that cannot be written are answered on
    /// the way (see [`GroupCommit::poll_event`]).
    #[must_use]
    pub fn poll_step(&mut self) -> Option<JournalStep> {
        if matches!(
            self.state,
            State::Opening | State::Writing { .. } | State::Reading
        ) {
            return None;
        }
        self.answer_unwritable();
        let append_next = matches!(self.queue.front(), Some(Waiting::Append { .. }));
        if self.state == State::Open && (self.read_turn || !append_next) {
            if let Some(ids) = self.reads.pop_front() {
                self.read_turn = false;
                self.state = State::Reading;
                return Some(JournalStep::Read(ids));
            }
        }
        let step = match self.queue.front()? {
            Waiting::Open => {
                self.queue.pop_front();
                self.state = State::Opening;
                JournalStep::Open
            }
            Waiting::Close => {
                self.queue.pop_front();
                self.state = State::Closed;
                JournalStep::Close
            }
            Waiting::Snapshot { token } => {
                let token = *token;
                self.queue.pop_front();
                JournalStep::Snapshot {
                    token,
                    open: self.state == State::Open,
                }
            }
            Waiting::Append { .. } => {
                self.read_turn = true;
                JournalStep::Write(self.take_group())
            }
        };
        self.recompute_next();
        Some(step)
    }

    /// The next answer to send to the node, in ticket order.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<JournalEvent> {
        self.events.pop_front()
    }

    /// Every answer ready, in ticket order, as one input for the node:
    /// `Input::Journal` for one, `Input::Journals` for several (what a
    /// write made durable costs the node one input, not one per append).
    #[must_use]
    pub fn poll_answers(&mut self) -> Option<Input> {
        let first = self.events.pop_front()?;
        if self.events.is_empty() {
            return Some(Input::Journal(first));
        }
        let mut all = Vec::with_capacity(self.events.len() + 1);
        all.push(first);
        all.extend(self.events.drain(..));
        Some(Input::Journals(all))
    }

    /// What the next write would take if it started now. O(1).
    pub fn next_group(&self) -> NextGroup {
        self.next
    }

    /// `next` with `waiting` queued behind it (`next` not sealed).
    fn grow(&self, mut next: NextGroup, waiting: &Waiting) -> NextGroup {
        match waiting {
            Waiting::Append { bytes, .. } if next.appends == 0 || self.fits(next, *bytes) => {
                next.appends += 1;
                next.bytes += bytes;
                next.sealed = next.appends >= self.limits.group_appends_max
                    || next.bytes >= self.limits.group_bytes_max;
            }
            Waiting::Append { .. } | Waiting::Open | Waiting::Close | Waiting::Snapshot { .. } => {
                next.sealed = true
            }
        }
        next
    }

    /// Recounts `next` after the head of the queue changed. Looks at no
    /// more than one group's worth of requests.
    fn recompute_next(&mut self) {
        let mut next = NextGroup::default();
        for waiting in &self.queue {
            if next.sealed {
                break;
            }
            next = self.grow(next, waiting);
        }
        self.next = next;
    }

    /// The `Open` step succeeded: the driver has sent every `Loaded`.
    pub fn opened(&mut self) {
        self.expect_opening("opened");
        self.state = State::Open;
        self.events.push_back(JournalEvent::Ready);
    }

    /// The `Open` step failed; the node will ask again.
    pub fn open_failed(&mut self, reason: String) {
        self.expect_opening("open_failed");
        self.state = State::Closed;
        self.events.push_back(JournalEvent::OpenFailed { reason });
    }

    /// The last `Read` step found `found` of the messages `asked` for
    /// (a message not found is the node's to judge).
    pub fn read_done(&mut self, asked: Vec<Id>, found: Vec<(Id, Arc<Message>)>) {
        self.expect_reading("read_done");
        self.state = State::Open;
        self.events.push_back(JournalEvent::Read {
            asked,
            found,
            error: None,
        });
    }

    /// The last `Read` step failed.
    pub fn read_failed(&mut self, asked: Vec<Id>, reason: String) {
        self.expect_reading("read_failed");
        self.state = State::Open;
        self.events.push_back(JournalEvent::Read {
            asked,
            found: Vec::new(),
            error: Some(reason),
        });
    }

    fn expect_reading(&self, what: &str) {
        assert!(
            self.state == State::Reading,
            "{what}() without a read in flight (journal {:?})",
            self.state
        );
    }

    /// The group of the last `Write` step is durable.
    pub fn written(&mut self) {
        for ticket in self.take_writing("written") {
            self.answer(JournalEvent::Durable { ticket });
        }
        self.state = State::Open;
    }

    /// The group of the last `Write` step was not written, or its fate is
    /// unknown. See the module docs for the answers.
    pub fn write_failed(&mut self, reason: String) {
        let tickets = self.take_writing("write_failed");
        self.fail(tickets, Outcome::Failed, reason);
    }

    /// A newer writer fenced the group of the last `Write` step.
    /// `by_epoch` is its activation epoch, if known.
    pub fn write_fenced(&mut self, by_epoch: Option<u32>) {
        let tickets = self.take_writing("write_fenced");
        let reason = match by_epoch {
            Some(e) => format!("fenced by a newer live (epoch {e})"),
            None => "fenced by a newer live".to_string(),
        };
        self.fail(tickets, Outcome::Fenced { by_epoch }, reason);
    }

    fn fail(&mut self, tickets: Vec<Ticket>, first: Outcome, reason: String) {
        for (i, ticket) in tickets.into_iter().enumerate() {
            let ev = match first {
                Outcome::Fenced { by_epoch } if i == 0 => JournalEvent::Fenced { ticket, by_epoch },
                _ => JournalEvent::Failed {
                    ticket,
                    reason: reason.clone(),
                },
            };
            self.answer(ev);
        }
        self.state = State::Broken { reason };
        self.answer_unwritable();
    }

    /// Answers the appends at the head of the queue while nothing may be
    /// written.
    fn answer_unwritable(&mut self) {
        let reason = match &self.state {
            State::Closed => NOT_OPEN_REASON.to_string(),
            State::Broken { reason } => reason.clone(),
            State::Opening | State::Open | State::Writing { .. } | State::Reading => return,
        };
        while let Some(asked) = self.reads.pop_front() {
            self.events.push_back(JournalEvent::Read {
                asked,
                found: Vec::new(),
                error: Some(reason.clone()),
            });
        }
        let mut answered = false;
        while let Some(Waiting::Append { ticket, .. }) = self.queue.front() {
            let ticket = *ticket;
            self.queue.pop_front();
            self.answer(JournalEvent::Failed {
                ticket,
                reason: reason.clone(),
            });
            answered = true;
        }
        if answered {
            self.recompute_next();
        }
    }

    /// Takes the appends at the head of the queue, within the limits.
    fn take_group(&mut self) -> WriteGroup {
        assert!(
            self.state == State::Open,
            "a write asked for while the journal is {:?}",
            self.state
        );
        let mut group = WriteGroup {
            tickets: Vec::new(),
            batches: Vec::new(),
            publish: Vec::new(),
            bytes: 0,
        };
        while let Some(Waiting::Append { bytes, .. }) = self.queue.front() {
            let so_far = NextGroup {
                appends: group.tickets.len(),
                bytes: group.bytes,
                sealed: false,
            };
            if !group.tickets.is_empty() && !self.fits(so_far, *bytes) {
                break;
            }
            let Some(Waiting::Append {
                ticket,
                batch,
                publish,
                bytes,
            }) = self.queue.pop_front()
            else {
                unreachable!("the head is an append");
            };
            group.tickets.push(ticket);
            group.batches.push(batch);
            group.publish.extend(publish);
            group.bytes += bytes;
        }
        assert!(!group.tickets.is_empty(), "an empty write group");
        self.state = State::Writing {
            tickets: group.tickets.clone(),
        };
        group
    }

    /// Whether an append of `bytes` may join a group of `so_far`.
    fn fits(&self, so_far: NextGroup, bytes: usize) -> bool {
        so_far.appends < self.limits.group_appends_max
            && so_far.bytes.saturating_add(bytes) <= self.limits.group_bytes_max
    }

    fn take_writing(&mut self, what: &str) -> Vec<Ticket> {
        match std::mem::replace(&mut self.state, State::Open) {
            State::Writing { tickets } => tickets,
            other => panic!("{what}() without a write in flight (journal {other:?})"),
        }
    }

    fn expect_opening(&self, what: &str) {
        assert!(
            self.state == State::Opening,
            "{what}() without an open in flight (journal {:?})",
            self.state
        );
    }

    fn answer(&mut self, ev: JournalEvent) {
        let ticket = match &ev {
            JournalEvent::Durable { ticket }
            | JournalEvent::Failed { ticket, .. }
            | JournalEvent::Fenced { ticket, .. } => *ticket,
            other => unreachable!("not an answer to an append: {other:?}"),
        };
        assert!(
            self.last_answered.is_none_or(|last| last < ticket),
            "journal tickets answered out of order: {:?} then {ticket}",
            self.last_answered
        );
        self.last_answered = Some(ticket);
        self.events.push_back(ev);
    }
}

#[derive(Copy, Clone)]
enum Outcome {
    Failed,
    Fenced { by_epoch: Option<u32> },
}
