//! The group-commit core that every journal driver shares: grouping within
//! the limits, the answers to a completion, a failure, a fencing and a
//! close, and the asserted contracts (tickets answered in issue order; a
//! write only asked for while the journal is open).

use halyard_core::ids::{Id, Ticket};
use halyard_core::journal::group_commit::{
    GroupCommit, GroupLimits, JournalStep, NextGroup, WriteGroup, NOT_OPEN_REASON,
};
use halyard_core::journal::{encode_entry, Entry, Key, Record};
use halyard_core::node::{JournalEvent, JournalRequest};
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
        entries: vec![entry(t)],
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
        entries: vec![entry(2); 5],
    };
    c.push(big);
    for t in [4, 6, 8] {
        c.push(JournalRequest::Append {
            ticket: Ticket(t),
            entries: vec![entry(2)],
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

/// Takes the answers so far, checking that `Durable` only answers written
/// tickets.
fn collect(
    c: &mut GroupCommit,
    answered: &mut Vec<u64>,
    written: &[u64],
) -> Result<(), TestCaseError> {
    while let Some(ev) = c.poll_event() {
        match ev {
            JournalEvent::Durable { ticket } => {
                prop_assert!(
                    written.contains(&ticket.0),
                    "durable but never written: {}",
                    ticket
                );
                answered.push(ticket.0);
            }
            JournalEvent::Failed { ticket, .. } | JournalEvent::Fenced { ticket, .. } => {
                answered.push(ticket.0)
            }
            JournalEvent::Ready | JournalEvent::OpenFailed { .. } | JournalEvent::Loaded { .. } => {
            }
        }
    }
    Ok(())
}

proptest! {
    /// Whatever the node asks and however the I/O ends: every append is
    /// answered once, in issue order; `Durable` only for written groups;
    /// no write between a failure and the next open, none while closed.
    #[test]
    fn every_append_is_answered_once_in_order(ops in prop::collection::vec(op(), 1..200)) {
        let mut c = GroupCommit::new(LIMITS);
        let mut next_ticket = 1u64;
        let mut issued = Vec::new();
        let mut answered: Vec<u64> = Vec::new();
        let mut written: Vec<u64> = Vec::new();
        // Open as the driver sees it: nothing may be written otherwise.
        let mut open = false;
        for op in ops {
            match op {
                Op::Append => {
                    c.push(append(next_ticket));
                    issued.push(next_ticket);
                    next_ticket += 1;
                }
                Op::Open => c.push(JournalRequest::Open),
                Op::Close => c.push(JournalRequest::Close),
                Op::Step(outcome) => {
                    let Some(step) = c.poll_step() else {
                        continue;
                    };
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
                        JournalStep::Write(g) => {
                            prop_assert!(open, "a write while not open: {g:?}");
                            prop_assert!(g.tickets.len() <= LIMITS.group_appends_max);
                            match outcome {
                                WriteOutcome::Written | WriteOutcome::OpenFails => {
                                    written.extend(g.tickets.iter().map(|t| t.0));
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
            collect(&mut c, &mut answered, &written)?;
        }
        // Carry out what is left.
        for _ in 0..1000 {
            match c.poll_step() {
                Some(JournalStep::Write(g)) => {
                    written.extend(g.tickets.iter().map(|t| t.0));
                    c.written();
                }
                Some(JournalStep::Open) => c.opened(),
                Some(JournalStep::Close) => {}
                None => break,
            }
            collect(&mut c, &mut answered, &written)?;
        }
        collect(&mut c, &mut answered, &written)?;
        prop_assert_eq!(answered, issued);
    }
}
