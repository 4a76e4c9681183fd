//! A node that steps down while its journal open is still loading, then
//! gets the lock again, must go live on the second open's answers only. The
//! driver answers opens in order and cannot cancel one in flight (a Kafka
//! read, a file scan): the first open's `Loaded`s and `Ready` still come,
//! after the node asked for the second.

use halyard_core::journal::{Entry, Record};
use halyard_core::node::{
    Input, JournalEvent, JournalRequest, LockEvent, Node, NodeConfig, Output,
};

fn activation(epoch: u32) -> Entry {
    Entry::Put(Record::Activation {
        epoch,
        node: "old".into(),
    })
}

/// The journal requests the node made since last asked.
fn journal_requests(node: &mut Node) -> Vec<JournalRequest> {
    let mut requests = Vec::new();
    while let Some(out) = node.poll_output() {
        if let Output::Journal(r) = out {
            requests.push(r);
        }
    }
    requests
}

fn opens(node: &mut Node) -> usize {
    journal_requests(node)
        .iter()
        .filter(|r| matches!(r, JournalRequest::Open))
        .count()
}

#[test]
fn answers_to_an_open_given_up_are_ignored() {
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    node.handle(1, Input::Lock(LockEvent::Acquired));
    assert_eq!(opens(&mut node), 1);
    // The lock goes while the journal loads; it comes back.
    node.handle(
        2,
        Input::Lock(LockEvent::Lost {
            reason: "test".into(),
        }),
    );
    node.handle(5_000, Input::Tick);
    node.handle(5_001, Input::Lock(LockEvent::Acquired));
    assert_eq!(opens(&mut node), 1);

    // The first open ends, having read part of the journal.
    node.handle(
        5_002,
        Input::Journal(JournalEvent::Loaded {
            entries: vec![activation(1)],
        }),
    );
    node.handle(5_003, Input::Journal(JournalEvent::Ready));
    let requests = journal_requests(&mut node);
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, JournalRequest::Append { .. })),
        "activated on an open it had given up: {requests:?}"
    );

    // The second open reads everything.
    node.handle(
        5_004,
        Input::Journal(JournalEvent::Loaded {
            entries: vec![activation(1), activation(7)],
        }),
    );
    node.handle(5_005, Input::Journal(JournalEvent::Ready));
    assert_eq!(node.epoch(), 8, "the epoch comes from the whole journal");
    assert!(journal_requests(&mut node)
        .iter()
        .any(|r| matches!(r, JournalRequest::Append { .. })));
}
