//! Failback under the lock coordinator: an active backup hands the role
//! back to a primary that asks for it, and only once the lock service lists
//! that primary in the in-sync set of the current epoch.

use std::collections::BTreeSet;

use super::*;
use crate::ha::Role;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn config(node: &str, peers: &[&str], role: Role, allow_failback: bool) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::new(node).with_peers(peers.iter().copied());
    c.check_period_ms = 1_000;
    c.peer_timeout_ms = 3_000;
    c.role = role;
    c.allow_failback = allow_failback;
    c
}

fn drain(c: &mut Coordinator) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn hand_backs(outs: &[Output]) -> Vec<&Output> {
    outs.iter()
        .filter(|o| matches!(o, Output::HandBack { .. }))
        .collect()
}

fn lines(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

/// `c` active under `epoch` after a state naming itself alone.
fn active(c: &mut Coordinator, now: u64, epoch: u64) {
    c.handle(now, Input::Tick);
    c.handle(now, Input::Acquired { epoch });
    let node = c.config().node.clone();
    c.handle(
        now,
        Input::StateRead {
            state: Some(LockState::new(epoch - 1, [node.as_str()])),
        },
    );
    c.handle(now, Input::StateWritten { epoch });
    drain(c);
    assert!(c.is_accepting());
}

/// Peer `p` caught up; the write that lists it is out (not confirmed).
fn caught_up_unconfirmed(c: &mut Coordinator, now: u64, epoch: u64, p: &str) {
    c.handle(now, Input::PeerCaughtUp { peer: p.into() });
    let outs = drain(c);
    assert!(
        outs.iter().any(|o| matches!(o, Output::WriteState { epoch: e, in_sync } if *e == epoch && in_sync.contains(p))),
        "{outs:?}"
    );
}

#[test]
fn an_in_sync_primary_that_asks_gets_the_role_back_once_confirmed() {
    let mut b = Coordinator::new(
        config("s1", &["s0"], Role::Backup, false),
        EpochFence::new(),
    );
    active(&mut b, 0, 9);
    // The primary's link says it wants failback: not in sync yet, nothing.
    b.handle(
        10,
        Input::PeerPreference {
            peer: "s0".into(),
            prefers_active: true,
        },
    );
    assert!(hand_backs(&drain(&mut b)).is_empty());
    // Caught up, the write is out: receipts wait for it, but the lock
    // service does not list it yet. Still nothing.
    caught_up_unconfirmed(&mut b, 20, 9, "s0");
    b.handle(1_500, Input::Tick);
    assert!(hand_backs(&drain(&mut b)).is_empty());
    assert_eq!(b.handing_back_to(), None);
    // Confirmed: hand back, once, with the line a human greps for.
    b.handle(1_600, Input::StateWritten { epoch: 9 });
    let outs = drain(&mut b);
    assert_eq!(
        hand_backs(&outs),
        vec![&Output::HandBack {
            epoch: 9,
            peer: "s0".into()
        }]
    );
    assert!(lines(&outs).contains(
        &"primary s0 is in sync (in the in-sync set of epoch 9) and asks for failback: handing the active role back"
            .to_string()
    ));
    // Still active (the node drains first), still waiting for s0's acks.
    assert!(b.is_accepting());
    assert_eq!(b.required_acks(), Some(set(&["s0"])));
    b.handle(1_700, Input::PeerHeard { peer: "s0".into() });
    assert!(hand_backs(&drain(&mut b)).is_empty(), "not again at once");
    // Given again every check period until the node releases.
    assert_eq!(b.next_deadline(), Some(2_600));
    b.handle(2_600, Input::Tick);
    assert_eq!(hand_backs(&drain(&mut b)).len(), 1);
    // The node drained and released.
    b.handle(2_700, Input::Shutdown);
    let outs = drain(&mut b);
    assert!(outs.contains(&Output::StopAccepting));
    assert!(outs.contains(&Output::Release));
}

#[test]
fn a_primary_not_in_sync_never_triggers_the_handback() {
    let mut b = Coordinator::new(
        config("s1", &["s0"], Role::Backup, false),
        EpochFence::new(),
    );
    active(&mut b, 0, 4);
    b.handle(
        0,
        Input::PeerPreference {
            peer: "s0".into(),
            prefers_active: true,
        },
    );
    // Heard from, but never caught up: for a long time, nothing.
    for t in (100..20_000).step_by(500) {
        b.handle(t, Input::PeerHeard { peer: "s0".into() });
        b.handle(t, Input::Tick);
        assert!(hand_backs(&drain(&mut b)).is_empty(), "at {t}");
    }
    // Caught up, then silent before the write is confirmed: it leaves the
    // set it was joining; no handback.
    caught_up_unconfirmed(&mut b, 20_000, 4, "s0");
    b.handle(23_000, Input::Tick);
    let outs = drain(&mut b);
    assert!(lines(&outs).iter().any(|l| l.contains("peer s0 silent")));
    b.handle(23_001, Input::StateWritten { epoch: 4 });
    let outs = drain(&mut b);
    assert!(hand_backs(&outs).is_empty(), "{outs:?}");
    assert_eq!(b.handing_back_to(), None);
}

#[test]
fn a_handback_under_way_ends_when_the_primary_leaves_the_set() {
    let mut b = Coordinator::new(
        config("s1", &["s0"], Role::Backup, false),
        EpochFence::new(),
    );
    active(&mut b, 0, 5);
    b.handle(
        0,
        Input::PeerPreference {
            peer: "s0".into(),
            prefers_active: true,
        },
    );
    caught_up_unconfirmed(&mut b, 0, 5, "s0");
    b.handle(10, Input::StateWritten { epoch: 5 });
    assert_eq!(hand_backs(&drain(&mut b)).len(), 1);
    assert_eq!(b.handing_back_to(), Some("s0"));
    // Silent for the peer timeout: removed (the write is out), no more
    // handback given.
    b.handle(3_010, Input::Tick);
    let outs = drain(&mut b);
    assert!(hand_backs(&outs).is_empty(), "{outs:?}");
    assert_eq!(b.handing_back_to(), None);
}

#[test]
fn no_handback_without_a_preference_or_by_a_primary_or_to_a_stranger() {
    // The peer withdrew its preference (a new link without it).
    let mut b = Coordinator::new(
        config("s1", &["s0"], Role::Backup, false),
        EpochFence::new(),
    );
    active(&mut b, 0, 3);
    for prefers_active in [true, false] {
        b.handle(
            0,
            Input::PeerPreference {
                peer: "s0".into(),
                prefers_active,
            },
        );
    }
    // Not a peer at all.
    b.handle(
        0,
        Input::PeerPreference {
            peer: "x".into(),
            prefers_active: true,
        },
    );
    caught_up_unconfirmed(&mut b, 0, 3, "s0");
    b.handle(10, Input::StateWritten { epoch: 3 });
    b.handle(5_000, Input::PeerHeard { peer: "s0".into() });
    b.handle(5_000, Input::Tick);
    assert!(hand_backs(&drain(&mut b)).is_empty());

    // A primary (with or without failback) never hands back.
    for allow_failback in [false, true] {
        let mut p = Coordinator::new(
            config("s0", &["s1"], Role::Primary, allow_failback),
            EpochFence::new(),
        );
        active(&mut p, 0, 3);
        p.handle(
            0,
            Input::PeerPreference {
                peer: "s1".into(),
                prefers_active: true,
            },
        );
        caught_up_unconfirmed(&mut p, 0, 3, "s1");
        p.handle(10, Input::StateWritten { epoch: 3 });
        assert!(hand_backs(&drain(&mut p)).is_empty());
    }
}

#[test]
fn the_returning_primary_takes_the_role_under_the_in_sync_rule_and_says_so() {
    let cfg = config("s0", &["s1"], Role::Primary, true);
    assert!(cfg.prefers_active() && !cfg.hands_back());
    // In sync: takes it, with the failback line (it was taking s1's stream).
    let mut p = Coordinator::new(cfg.clone(), EpochFence::new());
    p.handle(0, Input::EpochSeen { epoch: 8 });
    p.handle(0, Input::Tick);
    p.handle(0, Input::Acquired { epoch: 9 });
    p.handle(
        0,
        Input::StateRead {
            state: Some(LockState::new(8, ["s0", "s1"])),
        },
    );
    p.handle(1, Input::StateWritten { epoch: 9 });
    let outs = drain(&mut p);
    assert!(outs.contains(&Output::StartAccepting { epoch: 9 }));
    assert!(lines(&outs).contains(&"failback: took the active role back under epoch 9".to_string()));
    // Not in sync (it fell out during the drain): it does not take it.
    let mut p = Coordinator::new(cfg, EpochFence::new());
    p.handle(0, Input::EpochSeen { epoch: 8 });
    p.handle(0, Input::Tick);
    p.handle(0, Input::Acquired { epoch: 9 });
    p.handle(
        0,
        Input::StateRead {
            state: Some(LockState::new(8, ["s1"])),
        },
    );
    let outs = drain(&mut p);
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::StartAccepting { .. })));
    assert!(outs.contains(&Output::Release));
}

#[test]
fn after_handing_back_the_backup_holds_off_before_asking_again() {
    let mut b = Coordinator::new(
        config("s1", &["s0"], Role::Backup, false),
        EpochFence::new(),
    );
    let until = 100 + HANDBACK_HOLD_OFF_PERIODS * 1_000;
    b.hold_off(until);
    b.handle(100, Input::Tick);
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.next_deadline(), Some(until));
    b.handle(until, Input::Tick);
    assert_eq!(drain(&mut b), vec![Output::Acquire]);
}
