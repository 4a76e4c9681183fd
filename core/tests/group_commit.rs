//! The group-commit core that every journal driver shares: grouping within
//! the limits, the answers to a completion, a failure, a fencing and a
//! close, and the asserted contracts (tickets answered in issue order; a
//! write only asked for while the journal is open).

use halyard_core::ids::{Id, Ticket};
use halyard_core::journal::group_commit::{
    GroupCommit, GroupLimits, JournalStep, NextGroup, WriteGroup, NOT_OPEN_REASON,
};
use halyard_core::journal::{encode_entry, Entry, Key, Record};
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use proptest::prelude::*;

const LIMITS: GroupLimits = GroupLimits {
    group_appends_max: 3,
    group_bytes_max: 1 << 20,
};

fn entry(n: u64) -> Entry {
    if n.is_multiple_of(2) {
        Entry::Put(Record::Activation {
            epoch: n as u32,
            node: "n".into(),
        })
    } else {
        Entry::Tombstone(Key::Message(Id::new(1, n)))
    }
}

fn append(t: u64) -> JournalRequest {
    JournalRequest::Append {
        ticket: Ticket(t),
        entries: vec![entry(t)].into(),
        publish: Vec::new(),
    }
}

fn events(c: &mut GroupCommit) -> Vec<JournalEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn durable(ts: &[u64]) -> Vec<JournalEvent> {
    ts.iter()
        .map(|&t| JournalEvent::Durable { ticket: Ticket(t) })
        .collect()
}

fn failed(ts: &[u64], reason: &str) -> Vec<JournalEvent> {
    ts.iter()
        .map(|&t| JournalEvent::Failed {
            ticket: Ticket(t),
            reason: reason.into(),
        })
        .collect()
}

fn write(c: &mut GroupCommit) -> WriteGroup {
    match c.poll_step() {
        Some(JournalStep::Write(g)) => g,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn tickets(g: &WriteGroup) -> Vec<u64> {
    g.tickets.iter().map(|t| t.0).collect()
}

/// A commit that has opened.
fn open() -> GroupCommit {
    let mut c = GroupCommit::new(LIMITS);
    c.push(JournalRequest::Open);
    assert_eq!(c.poll_step(), Some(JournalStep::Open));
    c.opened();
    assert_eq!(events(&mut c), vec![JournalEvent::Ready]);
    c
}

#[test]
fn a_writes_answers_come_as_one_input() {
    let mut c = open();
    assert_eq!(c.poll_answers(), None, "nothing to answer");
    c.push(append(1));
    let _ = write(&mut c);
    c.written();
    assert_eq!(
        c.poll_answers(),
        Some(Input::Journal(JournalEvent::Durable { ticket: Ticket(1) })),
        "one answer alone"
    );
    for t in 2..=4 {
        c.push(append(t));
    }
    let _ = write(&mut c);
    c.written();
    assert_eq!(
        c.poll_answers(),
        Some(Input::Journals(durable(&[2, 3, 4]))),
        "a group's answers together, in order"
    );
    assert_eq!(c.poll_answers(), None);
    assert!(events(&mut c).is_empty());
}

#[test]
fn appends_are_written_in_groups_within_the_count_limit_and_answered_in_order() {
    let mut c = open();
    for t in 1..=5 {
        c.push(append(t));
    }
    let g = write(&mut c);
    assert_eq!(tickets(&g), vec![1, 2, 3]);
    // The batches are the encoded entries, one per append.
    let (key, value) = encode_entry(&entry(2));
    assert_eq!(g.batches[1][0].key, key);
    assert_eq!(g.batches[1][0].value, value);
    assert_eq!(g.bytes, g.batches.iter().flatten().map(|e| e.bytes()).sum());
    // One write at a time.
    assert_eq!(c.poll_step(), None);
    c.written();
    assert_eq!(events(&mut c), durable(&[1, 2, 3]));
    let g = write(&mut c);
    assert_eq!(tickets(&g), vec![4, 5]);
    c.written();
    assert_eq!(events(&mut c), durable(&[4, 5]));
    assert_eq!(c.poll_step(), None);
}

#[test]
fn the_byte_limit_bounds_a_group_but_a_large_append_goes_alone() {
    let one = {
        let (k, v) = encode_entry(&entry(2));
        k.len() + v.map_or(0, |v| v.len())
    };
    let mut c = GroupCommit::new(GroupLimits {
        group_appends_max: 100,
        group_bytes_max: one * 2,
    });
    c.push(JournalRequest::Open);
    assert_eq!(c.poll_step(), Some(JournalStep::Open));
    c.opened();
    let big = JournalRequest::Append {
        ticket: Ticket(2),
        entries: vec![entry(2); 5].into(),
        publish: Vec::new(),
    };
    c.push(big);
    for t in [4, 6, 8] {
        c.push(JournalRequest::Append {
            ticket: Ticket(t),
            entries: vec![entry(2)].into(),
            publish: Vec::new(),
        });
    }
    assert_eq!(tickets(&write(&mut c)), vec![2]);
    c.written();
    assert_eq!(
        c.next_group(),
        NextGroup {
            appends: 2,
            bytes: one * 2,
            sealed: true
        }
    );
    assert_eq!(tickets(&write(&mut c)), vec![4, 6]);
    c.written();
    assert_eq!(tickets(&write(&mut c)), vec![8]);
}

#[test]
fn a_failed_write_fails_its_group_and_every_append_behind_it_until_the_next_open() {
    let mut c = open();
    for t in 1..=5 {
        c.push(append(t));
    }
    let g = write(&mut c);
    assert_eq!(tickets(&g), vec![1, 2, 3]);
    c.push(append(6));
    c.write_failed("disk full".into());
    assert_eq!(events(&mut c), failed(&[1, 2, 3, 4, 5, 6], "disk full"));
    // Nothing more is written: a later append is failed too.
    c.push(append(7));
    assert_eq!(c.poll_step(), None);
    assert_eq!(events(&mut c), failed(&[7], "disk full"));
    // Reopening clears it.
    c.push(JournalRequest::Open);
    c.push(append(8));
    assert_eq!(c.poll_step(), Some(JournalStep::Open));
    assert_eq!(c.poll_step(), None, "appends wait for the open");
    c.opened();
    assert_eq!(events(&mut c), vec![JournalEvent::Ready]);
    assert_eq!(tickets(&write(&mut c)), vec![8]);
    c.written();
    assert_eq!(events(&mut c), durable(&[8]));
}

#[test]
fn a_fencing_is_reported_once_and_the_other_tickets_fail() {
    let mut c = open();
    for t in 1..=4 {
        c.push(append(t));
    }
    assert_eq!(tickets(&write(&mut c)), vec![1, 2, 3]);
    c.write_fenced(Some(7));
    let reason = "fenced by a newer live (epoch 7)";
    let mut expected = vec![JournalEvent::Fenced {
        ticket: Ticket(1),
        by_epoch: Some(7),
    }];
    expected.extend(failed(&[2, 3, 4], reason));
    assert_eq!(events(&mut c), expected);
}

#[test]
fn requests_are_taken_in_order_around_close_and_open() {
    let mut c = open();
    c.push(append(1));
    c.push(append(2));
    c.push(JournalRequest::Close);
    c.push(append(3));
    c.push(JournalRequest::Open);
    c.push(append(4));
    assert_eq!(
        c.next_group(),
        NextGroup {
            appends: 2,
            bytes: c.next_group().bytes,
            sealed: true
        }
    );
    // The appends before the Close are written, then it closes.
    assert_eq!(tickets(&write(&mut c)), vec![1, 2]);
    assert_eq!(c.poll_step(), None, "Close waits for the write in flight");
    c.written();
    assert_eq!(c.poll_step(), Some(JournalStep::Close));
    // An append while closed is not written.
    assert_eq!(c.poll_step(), Some(JournalStep::Open));
    let mut expected = durable(&[1, 2]);
    expected.extend(failed(&[3], NOT_OPEN_REASON));
    assert_eq!(events(&mut c), expected);
    c.open_failed("Kafka unreachable".into());
    assert_eq!(
        events(&mut c),
        vec![JournalEvent::OpenFailed {
            reason: "Kafka unreachable".into()
        }]
    );
    assert_eq!(c.poll_step(), None);
    assert_eq!(events(&mut c), failed(&[4], NOT_OPEN_REASON));
}

#[test]
fn appends_before_any_open_fail() {
    let mut c = GroupCommit::new(LIMITS);
    c.push(append(1));
    assert_eq!(c.poll_step(), None);
    assert_eq!(events(&mut c), failed(&[1], NOT_OPEN_REASON));
}

#[test]
#[should_panic(expected = "issued out of order")]
fn tickets_must_be_pushed_in_issue_order() {
    let mut c = open();
    c.push(append(2));
    c.push(append(1));
}

#[test]
#[should_panic(expected = "without a write in flight")]
fn a_completion_without_a_write_is_a_bug() {
    let mut c = open();
    c.written();
}

#[test]
#[should_panic(expected = "without an open in flight")]
fn an_open_completion_without_an_open_is_a_bug() {
    let mut c = GroupCommit::new(LIMITS);
    c.opened();
}

#[derive(Clone, Debug)]
enum Op {
    Append,
    Open,
    Close,
    /// Carry out the next step; a write ends in this outcome.
    Step(WriteOutcome),
}

#[derive(Copy, Clone, Debug)]
enum WriteOutcome {
    Written,
    Failed,
    Fenced,
    OpenFails,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Append),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
        6 => prop_oneof![
            6 => Just(WriteOutcome::Written),
            1 => Just(WriteOutcome::Failed),
            1 => Just(WriteOutcome::Fenced),
            1 => Just(WriteOutcome::OpenFails),
        ]
        .prop_map(Op::Step),
    ]
}

/// The test's copy of what the group commit holds, to check `next_group`.
#[derive(Debug)]
enum Queued {
    Append { ticket: u64, bytes: usize },
    Open,
    Close,
}

/// Limits that both bind in the property test: at most 4 appends, and
/// about 3 appends' bytes.
fn prop_limits() -> GroupLimits {
    GroupLimits {
        group_appends_max: 4,
        group_bytes_max: 3 * append_bytes(2),
    }
}

fn append_bytes(t: u64) -> usize {
    let (k, v) = encode_entry(&entry(t));
    k.len() + v.map_or(0, |v| v.len())
}

/// `next_group` recounted from the copy of the queue.
fn expected_next(queue: &std::collections::VecDeque<Queued>, limits: GroupLimits) -> NextGroup {
    let mut next = NextGroup::default();
    for q in queue {
        match q {
            Queued::Append { bytes, .. }
                if next.appends == 0
                    || (next.appends < limits.group_appends_max
                        && next.bytes + bytes <= limits.group_bytes_max) =>
            {
                next.appends += 1;
                next.bytes += bytes;
                if next.appends >= limits.group_appends_max || next.bytes >= limits.group_bytes_max
                {
                    next.sealed = true;
                    break;
                }
            }
            _ => {
                next.sealed = true;
                break;
            }
        }
    }
    next
}

/// The model of one run: what was issued, answered and written, and the
/// copy of the queue.
#[derive(Default)]
struct Model {
    queue: std::collections::VecDeque<Queued>,
    in_flight: Vec<u64>,
    answered: Vec<u64>,
    written: Vec<u64>,
}

impl Model {
    /// Takes the answers so far. `Durable` only answers written tickets; an
    /// answer to a ticket not in flight was taken off the queue.
    fn collect(&mut self, c: &mut GroupCommit) -> Result<(), TestCaseError> {
        while let Some(ev) = c.poll_event() {
            let ticket = match ev {
                JournalEvent::Durable { ticket } => {
                    prop_assert!(
                        self.written.contains(&ticket.0),
                        "durable but never written: {}",
                        ticket
                    );
                    ticket.0
                }
                JournalEvent::Failed { ticket, .. } | JournalEvent::Fenced { ticket, .. } => {
                    ticket.0
                }
                JournalEvent::Ready
                | JournalEvent::OpenFailed { .. }
                | JournalEvent::Loaded { .. } => continue,
                JournalEvent::Read { .. } => {
                    prop_assert!(false, "a read answered that nobody asked for");
                    continue;
                }
            };
            self.answered.push(ticket);
            if !self.in_flight.contains(&ticket) {
                let front = self.queue.pop_front();
                let ok = matches!(front, Some(Queued::Append { ticket: t, .. }) if t == ticket);
                prop_assert!(
                    ok,
                    "answered {} but the queue starts with {:?}",
                    ticket,
                    front
                );
            }
        }
        Ok(())
    }

    /// A step was taken off the queue.
    fn took(&mut self, step: &JournalStep) -> Result<(), TestCaseError> {
        match step {
            JournalStep::Open => {
                let front = self.queue.pop_front();
                prop_assert!(
                    matches!(front, Some(Queued::Open)),
                    "opening before {:?}",
                    front
                );
            }
            JournalStep::Close => {
                let front = self.queue.pop_front();
                prop_assert!(
                    matches!(front, Some(Queued::Close)),
                    "closing before {:?}",
                    front
                );
            }
            JournalStep::Read(ids) => prop_assert!(false, "a read nobody asked for: {:?}", ids),
            JournalStep::Snapshot { token, .. } => {
                prop_assert!(false, "a snapshot nobody asked for: {}", token)
            }
            JournalStep::Write(g) => {
                self.in_flight = g.tickets.iter().map(|t| t.0).collect();
                for t in &self.in_flight {
                    let front = self.queue.pop_front();
                    let ok = matches!(front, Some(Queued::Append { ticket, .. }) if ticket == *t);
                    prop_assert!(ok, "writing {} but the queue starts with {:?}", t, front);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    /// Whatever the node asks and however the I/O ends: every append is
    /// answered once, in issue order; `Durable` only for written groups;
    /// no write between a failure and the next open, none while closed;
    /// `next_group` tells what the next write takes.
    #[test]
    fn every_append_is_answered_once_in_order(ops in prop::collection::vec(op(), 1..200)) {
        let limits = prop_limits();
        let mut c = GroupCommit::new(limits);
        let mut m = Model::default();
        let mut next_ticket = 1u64;
        let mut issued = Vec::new();
        // Open as the driver sees it: nothing may be written otherwise.
        let mut open = false;
        for op in ops {
            match op {
                Op::Append => {
                    c.push(append(next_ticket));
                    m.queue.push_back(Queued::Append { ticket: next_ticket, bytes: append_bytes(next_ticket) });
                    issued.push(next_ticket);
                    next_ticket += 1;
                }
                Op::Open => {
                    c.push(JournalRequest::Open);
                    m.queue.push_back(Queued::Open);
                }
                Op::Close => {
                    c.push(JournalRequest::Close);
                    m.queue.push_back(Queued::Close);
                }
                Op::Step(outcome) => {
                    let predicted = c.next_group();
                    let Some(step) = c.poll_step() else {
                        m.collect(&mut c)?;
                        continue;
                    };
                    m.collect(&mut c)?;
                    m.took(&step)?;
                    match step {
                        JournalStep::Open => {
                            open = false;
                            if matches!(outcome, WriteOutcome::OpenFails) {
                                c.open_failed("no".into());
                            } else {
                                c.opened();
                                open = true;
                            }
                        }
                        JournalStep::Close => open = false,
                        JournalStep::Read(_) | JournalStep::Snapshot { .. } => {
                            unreachable!("no reads or snapshots pushed")
                        }
                        JournalStep::Write(g) => {
                            prop_assert!(open, "a write while not open: {:?}", g);
                            prop_assert_eq!((g.tickets.len(), g.bytes), (predicted.appends, predicted.bytes));
                            match outcome {
                                WriteOutcome::Written | WriteOutcome::OpenFails => {
                                    m.written.extend(g.tickets.iter().map(|t| t.0));
                                    c.written();
                                }
                                WriteOutcome::Failed => {
                                    open = false;
                                    c.write_failed("boom".into());
                                }
                                WriteOutcome::Fenced => {
                                    open = false;
                                    c.write_fenced(None);
                                }
                            }
                        }
                    }
                }
            }
            m.collect(&mut c)?;
            prop_assert_eq!(c.next_group(), expected_next(&m.queue, limits));
        }
        // Carry out what is left.
        for _ in 0..1000 {
            let Some(step) = c.poll_step() else {
                break;
            };
            m.collect(&mut c)?;
            m.took(&step)?;
            match step {
                JournalStep::Write(g) => {
                    m.written.extend(g.tickets.iter().map(|t| t.0));
                    c.written();
                }
                JournalStep::Open => c.opened(),
                JournalStep::Close => {}
                JournalStep::Read(_) | JournalStep::Snapshot { .. } => {
                    unreachable!("no reads or snapshots pushed")
                }
            }
            m.collect(&mut c)?;
            prop_assert_eq!(c.next_group(), expected_next(&m.queue, limits));
        }
        m.collect(&mut c)?;
        prop_assert_eq!(m.answered, issued);
    }
}

fn read(ids: &[u64]) -> JournalRequest {
    JournalRequest::Read {
        ids: ids.iter().map(|&n| Id::new(1, n)).collect(),
    }
}

/// Reads (paging) wait for the journal to open, go at most one between two
/// writes so the append path never waits behind a run of them, and are
/// answered with the reason while the journal cannot read.
#[test]
fn reads_take_turns_with_writes() {
    let mut c = GroupCommit::new(LIMITS);
    c.push(JournalRequest::Open);
    assert_eq!(c.poll_step(), Some(JournalStep::Open));
    assert_eq!(c.poll_step(), None, "nothing while opening");
    c.opened();
    assert_eq!(events(&mut c), vec![JournalEvent::Ready]);
    c.push(read(&[1]));
    c.push(append(1));
    c.push(read(&[2]));
    // A read may go first once; then a write; then the next read.
    assert_eq!(c.poll_step(), Some(JournalStep::Read(vec![Id::new(1, 1)])));
    assert_eq!(c.poll_step(), None, "nothing while reading");
    c.read_done(vec![Id::new(1, 1)], Vec::new());
    let g = write(&mut c);
    assert_eq!(g.tickets, vec![Ticket(1)]);
    c.push(append(2));
    c.written();
    assert_eq!(c.poll_step(), Some(JournalStep::Read(vec![Id::new(1, 2)])));
    c.read_failed(vec![Id::new(1, 2)], "disk".into());
    let g = write(&mut c);
    assert_eq!(g.tickets, vec![Ticket(2)]);
    c.written();
    assert_eq!(
        events(&mut c),
        vec![
            JournalEvent::Read {
                asked: vec![Id::new(1, 1)],
                found: Vec::new(),
                error: None
            },
            JournalEvent::Durable { ticket: Ticket(1) },
            JournalEvent::Read {
                asked: vec![Id::new(1, 2)],
                found: Vec::new(),
                error: Some("disk".into())
            },
            JournalEvent::Durable { ticket: Ticket(2) },
        ]
    );
    // Closed: a read is answered at once with why.
    c.push(JournalRequest::Close);
    assert_eq!(c.poll_step(), Some(JournalStep::Close));
    c.push(read(&[3]));
    assert_eq!(c.poll_step(), None);
    assert_eq!(
        events(&mut c),
        vec![JournalEvent::Read {
            asked: vec![Id::new(1, 3)],
            found: Vec::new(),
            error: Some(NOT_OPEN_REASON.into())
        }]
    );
}

#[test]
fn a_snapshot_comes_after_every_write_asked_before_it_and_answers_nothing() {
    let mut c = open();
    c.push(append(1));
    c.push(JournalRequest::Snapshot { token: 7 });
    c.push(append(2));
    let g = write(&mut c);
    assert_eq!(tickets(&g), [1], "the snapshot seals the group before it");
    c.written();
    assert_eq!(
        c.poll_step(),
        Some(JournalStep::Snapshot {
            token: 7,
            open: true
        })
    );
    let g = write(&mut c);
    assert_eq!(tickets(&g), [2]);
    c.written();
    assert_eq!(events(&mut c), durable(&[1, 2]));
    // Asked of a closed journal: the step says so.
    c.push(JournalRequest::Close);
    assert_eq!(c.poll_step(), Some(JournalStep::Close));
    c.push(JournalRequest::Snapshot { token: 8 });
    assert_eq!(
        c.poll_step(),
        Some(JournalStep::Snapshot {
            token: 8,
            open: false
        })
    );
}
