//! Fenced preemption at the node: a waiting backup told the live is
//! suspected gone loads the journal (the journal's open fences older
//! writers) exactly as if it held the lock; a live node hearing a peer live
//! at a newer epoch steps down; nothing else moves.

use std::sync::Arc;

use bytes::Bytes;
use halyard_core::ids::Id;
use halyard_core::journal::{Entry, QueueDef, QueueKind, Record, Routing};
use halyard_core::message::{Body, Message};
use halyard_core::node::{
    AcceptRequest, Event, Input, JournalEvent, JournalRequest, LockEvent, LockRequest, Node,
    NodeConfig, Output,
};

fn outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn preempt() -> Input {
    Input::Lock(LockEvent::Preempt {
        peer: "a".into(),
        reason: "its peer link closed".into(),
    })
}

fn peer_live(epoch: u32) -> Input {
    Input::Lock(LockEvent::PeerLive {
        peer: "b".into(),
        epoch,
    })
}

/// A node that went live at epoch 4 (the journal held epoch 3).
fn live_node() -> Node {
    live_node_holding(0)
}

/// As `live_node`, with `messages` messages in queue `orders`.
fn live_node_holding(messages: u64) -> Node {
    let q = Id::new(1, 1);
    let mut entries = vec![
        Entry::Put(Record::Activation {
            epoch: 3,
            node: "a".into(),
        }),
        Entry::Put(Record::QueueCreated(QueueDef {
            id: q,
            name: "orders".into(),
            address: "orders".into(),
            kind: QueueKind::Anycast,
        })),
    ];
    entries.extend((0..messages).map(|i| {
        Entry::Put(Record::MessageStored {
            id: Id::new(3, i + 1),
            queues: vec![q],
            message: Arc::new(Message::new(
                "orders",
                Routing::Anycast,
                Body::Bytes(Bytes::from_static(b"payload")),
            )),
        })
    }));
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    node.handle(1, preempt());
    node.handle(2, Input::Journal(JournalEvent::Loaded { entries }));
    node.handle(3, Input::Journal(JournalEvent::Ready));
    let ticket = outputs(&mut node)
        .into_iter()
        .find_map(|o| match o {
            Output::Journal(JournalRequest::Append { ticket, .. }) => Some(ticket),
            _ => None,
        })
        .expect("the activation is written");
    node.handle(4, Input::Journal(JournalEvent::Durable { ticket }));
    assert_eq!(node.epoch(), 4);
    assert!(outputs(&mut node).contains(&Output::Accept(AcceptRequest::Start)));
    node
}

#[test]
fn a_waiting_backup_preempts_by_loading_the_journal() {
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    outputs(&mut node);
    node.handle(1, preempt());
    let out = outputs(&mut node);
    assert!(
        out.contains(&Output::Journal(JournalRequest::Open)),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::Preempting { peer, .. }) if peer == "a")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::Event(Event::LiveLockObtained))),
        "a preemption is not the lock"
    );
    // A second suspicion while loading changes nothing.
    node.handle(2, preempt());
    assert!(outputs(&mut node).is_empty());
}

#[test]
fn a_live_node_steps_down_for_a_newer_live_peer_only() {
    let mut node = live_node();
    node.handle(10, peer_live(3));
    node.handle(11, peer_live(4));
    assert!(
        outputs(&mut node).is_empty(),
        "older or equal epochs are ignored"
    );
    node.handle(12, preempt());
    assert!(
        outputs(&mut node).is_empty(),
        "a live node does not preempt"
    );
    node.handle(13, peer_live(5));
    let out = outputs(&mut node);
    assert!(
        out.contains(&Output::Accept(AcceptRequest::Stop)),
        "{out:?}"
    );
    assert!(out.contains(&Output::Lock(LockRequest::Release)), "{out:?}");
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Event(Event::SupersededByPeer {
                epoch: 5,
                our_epoch: 4,
                ..
            })
        )),
        "{out:?}"
    );
}

#[test]
fn a_backup_ignores_live_peers() {
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    outputs(&mut node);
    node.handle(1, peer_live(9));
    assert!(outputs(&mut node).is_empty());
}

#[test]
fn the_lock_is_left_to_a_live_peer_until_it_is_no_longer_live() {
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    outputs(&mut node);
    node.handle(1, peer_live(6));
    node.handle(2, Input::Lock(LockEvent::Acquired));
    let out = outputs(&mut node);
    assert!(out.contains(&Output::Lock(LockRequest::Release)), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::LockLeftToLivePeer { epoch: 6, .. }))),
        "{out:?}"
    );
    assert!(!out.contains(&Output::Journal(JournalRequest::Open)));
    // It asks again after the retry delay; the peer stepped down meanwhile.
    node.handle(3, Input::Lock(LockEvent::PeerNotLive { peer: "b".into() }));
    node.handle(60_000, Input::Tick);
    assert!(outputs(&mut node).contains(&Output::Lock(LockRequest::Acquire)));
    node.handle(60_001, Input::Lock(LockEvent::Acquired));
    assert!(outputs(&mut node).contains(&Output::Journal(JournalRequest::Open)));
}

#[test]
fn a_suspect_already_replaced_by_a_live_peer_is_not_preempted() {
    let mut node = Node::new(NodeConfig::default());
    node.handle(0, Input::Start);
    outputs(&mut node);
    node.handle(1, peer_live(6));
    node.handle(2, preempt());
    assert!(
        outputs(&mut node).is_empty(),
        "b is live: a's suspicion is stale"
    );
    node.handle(3, Input::Lock(LockEvent::PeerNotLive { peer: "b".into() }));
    node.handle(4, preempt());
    let out = outputs(&mut node);
    assert!(
        out.contains(&Output::Journal(JournalRequest::Open)),
        "{out:?}"
    );
    assert!(
        out.contains(&Output::Lock(LockRequest::Acquire)),
        "joins the lock group: {out:?}"
    );
}

/// A live that stops (or steps down) leaves its broker state to the driver
/// to free after the outputs are carried out: freeing 100,000 messages took
/// about 40 ms, which delayed the closing of the peer links that tells the
/// backups to take over. A driver that does not take it has it freed by the
/// next input.
#[test]
fn a_stopping_live_leaves_its_broker_state_to_the_driver_to_free() {
    for taken in [true, false] {
        let mut node = live_node_holding(1000);
        assert_eq!(node.broker().message_count(), 1000);
        assert!(
            node.take_retired_broker().is_none(),
            "nothing is retired while live"
        );
        node.handle(5, Input::Shutdown);
        let out = outputs(&mut node);
        assert!(
            out.contains(&Output::Accept(AcceptRequest::Stop)),
            "{out:?}"
        );
        assert!(out.contains(&Output::Stopped), "{out:?}");
        assert_eq!(node.broker().message_count(), 0, "a fresh broker");
        if taken {
            let old = node.take_retired_broker().expect("the old state");
            assert_eq!(old.message_count(), 1000);
            assert!(node.take_retired_broker().is_none(), "taken once");
        } else {
            node.handle(6, Input::Tick);
            assert!(
                node.take_retired_broker().is_none(),
                "the next input freed it"
            );
        }
    }
}
