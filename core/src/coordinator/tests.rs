//! Unit tests of the lock coordinator's state machine, input by input.

use std::collections::BTreeSet;

use super::*;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn config(node: &str, peers: &[&str]) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::new(node).with_peers(peers.iter().copied());
    c.check_period_ms = 1_000;
    c.peer_timeout_ms = 3_000;
    c
}

fn drain(c: &mut Coordinator) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// The outputs other than events.
fn actions(c: &mut Coordinator) -> Vec<Output> {
    drain(c)
        .into_iter()
        .filter(|o| !matches!(o, Output::Event(_)))
        .collect()
}

fn events(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

/// Drives `c` from start to active under `epoch` with `state` read.
fn activate(c: &mut Coordinator, now: u64, epoch: u64, state: Option<LockState>) -> Vec<Output> {
    c.handle(now, Input::Tick);
    assert_eq!(actions(c), vec![Output::Acquire]);
    c.handle(now, Input::Acquired { epoch });
    assert_eq!(actions(c), vec![Output::ReadState]);
    c.handle(now, Input::StateRead { state });
    let mut outs = drain(c);
    let Some(Output::WriteState { epoch: e, .. }) =
        outs.iter().find(|o| matches!(o, Output::WriteState { .. }))
    else {
        return outs;
    };
    assert_eq!(*e, epoch);
    c.handle(now, Input::StateWritten { epoch });
    outs.extend(drain(c));
    outs
}

#[test]
fn config_is_checked() {
    assert!(config("a", &["b"]).validate().is_ok());
    assert!(config("", &[]).validate().is_err());
    assert!(config("a b", &[]).validate().is_err());
    assert_eq!(
        config("a", &["a"]).validate(),
        Err(CoordinatorConfigError::BadPeerName("a".into()))
    );
    let mut c = config("a", &[]);
    c.check_period_ms = 1;
    assert_eq!(c.validate(), Err(CoordinatorConfigError::CheckPeriod(1)));
    c.check_period_ms = CHECK_PERIOD_MS_MAX + 1;
    assert!(c.validate().is_err());
    c.check_period_ms = 1_000;
    c.peer_timeout_ms = 0;
    assert!(c.validate().is_err());
}

#[test]
fn passive_asks_every_check_period_until_acquired() {
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    assert_eq!(c.next_deadline(), Some(0));
    c.handle(0, Input::Tick);
    assert_eq!(actions(&mut c), vec![Output::Acquire]);
    // One request out at a time.
    assert_eq!(c.next_deadline(), None);
    c.handle(0, Input::Tick);
    assert!(actions(&mut c).is_empty());
    c.handle(5, Input::Busy);
    assert_eq!(c.next_deadline(), Some(1_005));
    c.handle(1_004, Input::Tick);
    assert!(actions(&mut c).is_empty());
    c.handle(1_005, Input::Tick);
    assert_eq!(actions(&mut c), vec![Output::Acquire]);
    c.handle(
        1_010,
        Input::AcquireFailed {
            reason: "connection refused".into(),
        },
    );
    let outs = drain(&mut c);
    assert_eq!(
        events(&outs),
        vec!["cannot ask for the lock: connection refused"]
    );
    assert_eq!(c.phase(), &Phase::Passive { next_try_at: 2_010 });
}

#[test]
fn first_start_takes_the_active_role_after_the_state_is_written() {
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    c.handle(0, Input::Tick);
    c.handle(0, Input::Acquired { epoch: 1 });
    assert_eq!(actions(&mut c), vec![Output::Acquire, Output::ReadState]);
    c.handle(0, Input::StateRead { state: None });
    assert_eq!(
        actions(&mut c),
        vec![Output::WriteState {
            epoch: 1,
            in_sync: set(&["a"])
        }]
    );
    // Not accepting before the lock service confirmed.
    assert!(!c.is_accepting());
    assert_eq!(c.phase(), &Phase::Activating { epoch: 1 });
    c.handle(3, Input::StateWritten { epoch: 1 });
    let outs = drain(&mut c);
    assert!(outs.contains(&Output::StartAccepting { epoch: 1 }));
    assert!(outs.contains(&Output::RequiredAcks {
        epoch: 1,
        peers: set(&[])
    }));
    assert_eq!(
        events(&outs),
        vec!["active with epoch 1, in-sync set {a}: opening the client listener"]
    );
    assert!(c.is_accepting());
    assert_eq!(c.confirmed_in_sync(), Some(&set(&["a"])));
}

#[test]
fn a_broker_in_the_in_sync_set_takes_over() {
    let mut c = Coordinator::new(config("b", &["a"]), EpochFence::new());
    let outs = activate(&mut c, 0, 8, Some(LockState::new(7, ["a", "b"])));
    assert!(outs.contains(&Output::StartAccepting { epoch: 8 }));
    assert_eq!(c.fence().newest(), 8);
}

#[test]
fn a_broker_outside_the_in_sync_set_releases_and_says_why() {
    let mut c = Coordinator::new(config("b", &["a"]), EpochFence::new());
    let outs = activate(&mut c, 0, 8, Some(LockState::new(7, ["a"])));
    assert_eq!(
        events(&outs),
        vec!["not in the in-sync set {a} of epoch 7: catching up from the active first"]
    );
    assert!(outs.contains(&Output::Release));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::WriteState { .. } | Output::StartAccepting { .. })));
    assert_eq!(c.phase(), &Phase::Passive { next_try_at: 1_000 });
    assert_eq!(c.fence().newest(), 8);
}

#[test]
fn an_empty_in_sync_set_or_the_operator_override_lets_it_take_over() {
    let mut c = Coordinator::new(config("b", &["a"]), EpochFence::new());
    let outs = activate(&mut c, 0, 3, Some(LockState::new(2, Vec::<String>::new())));
    assert!(outs.contains(&Output::StartAccepting { epoch: 3 }));

    let mut cfg = config("b", &["a"]);
    cfg.force_active = true;
    let mut c = Coordinator::new(cfg, EpochFence::new());
    let outs = activate(&mut c, 0, 8, Some(LockState::new(7, ["a"])));
    assert!(outs.contains(&Output::StartAccepting { epoch: 8 }));
    assert!(events(&outs)[0].starts_with(
        "operator override: taking the active role although not in the in-sync set {a} of epoch 7"
    ));
}

#[test]
fn a_lock_service_going_backwards_is_refused() {
    let mut c = Coordinator::new(config("a", &[]), EpochFence::starting_at(5));
    c.handle(0, Input::Tick);
    c.handle(0, Input::Acquired { epoch: 5 });
    let outs = drain(&mut c);
    assert!(outs.contains(&Output::Release));
    assert!(events(&outs)[0].contains("not newer than epoch 5"));
    // A state newer than the acquisition.
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    let outs = activate(&mut c, 0, 4, Some(LockState::new(4, ["a"])));
    assert!(outs.contains(&Output::Release));
    assert!(!c.is_accepting());
}

#[test]
fn a_silent_peer_leaves_the_in_sync_set_before_receipts_stop_waiting() {
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    activate(&mut c, 0, 1, None);
    // b catches up and joins: receipts wait for b before the write.
    c.handle(100, Input::PeerCaughtUp { peer: "b".into() });
    let outs = drain(&mut c);
    assert_eq!(
        outs[0],
        Output::RequiredAcks {
            epoch: 1,
            peers: set(&["b"])
        }
    );
    assert_eq!(
        outs[1],
        Output::WriteState {
            epoch: 1,
            in_sync: set(&["a", "b"])
        }
    );
    c.handle(110, Input::StateWritten { epoch: 1 });
    assert_eq!(
        events(&drain(&mut c)),
        vec!["peer b joined the in-sync set of epoch 1"]
    );
    assert_eq!(c.next_deadline(), Some(3_100));
    c.handle(2_000, Input::PeerHeard { peer: "b".into() });
    assert_eq!(c.next_deadline(), Some(5_000));
    c.handle(5_000, Input::Tick);
    let outs = drain(&mut c);
    assert_eq!(
        events(&outs),
        vec!["peer b silent for 3000 ms: removing it from the in-sync set"]
    );
    assert!(outs.contains(&Output::WriteState {
        epoch: 1,
        in_sync: set(&["a"])
    }));
    // Until the lock service has it, receipts still wait for b.
    assert_eq!(c.required_acks(), Some(set(&["b"])));
    c.handle(5_010, Input::StateWritten { epoch: 1 });
    let outs = drain(&mut c);
    assert_eq!(
        events(&outs),
        vec!["peer b left the in-sync set of epoch 1"]
    );
    assert!(outs.contains(&Output::RequiredAcks {
        epoch: 1,
        peers: set(&[])
    }));
    assert_eq!(c.required_acks(), Some(set(&[])));
    assert!(c.is_accepting(), "a lost peer never stops the active");
}

#[test]
fn an_unanswered_write_is_read_back_before_going_on() {
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    activate(&mut c, 0, 1, None);
    c.handle(10, Input::PeerCaughtUp { peer: "b".into() });
    drain(&mut c);
    c.handle(
        20,
        Input::StateWriteRefused {
            epoch: 1,
            why: WriteRefusal::Unavailable,
        },
    );
    drain(&mut c);
    assert_eq!(c.required_acks(), Some(set(&["b"])));
    assert_eq!(c.next_deadline(), Some(1_020));
    c.handle(1_020, Input::Tick);
    assert_eq!(actions(&mut c), vec![Output::ReadState]);
    // It had been written after all.
    c.handle(
        1_030,
        Input::StateRead {
            state: Some(LockState::new(1, ["a", "b"])),
        },
    );
    assert_eq!(
        events(&drain(&mut c)),
        vec!["peer b joined the in-sync set of epoch 1"]
    );
    assert_eq!(c.confirmed_in_sync(), Some(&set(&["a", "b"])));
    assert!(c.is_accepting());
}

#[test]
fn losing_the_lock_closes_the_listener_and_every_client() {
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    activate(&mut c, 0, 4, None);
    // A loss of an older acquisition is not this one's.
    c.handle(
        10,
        Input::Lost {
            epoch: 3,
            reason: "old".into(),
        },
    );
    assert!(drain(&mut c).is_empty());
    c.handle(
        10,
        Input::Lost {
            epoch: 4,
            reason: "session expired".into(),
        },
    );
    let outs = drain(&mut c);
    assert_eq!(
        events(&outs),
        vec!["lock lost (epoch 4: session expired), closing the client listener"]
    );
    assert_eq!(&outs[1..], &[Output::StopAccepting, Output::Release]);
    assert!(!c.is_accepting());
    assert_eq!(c.phase(), &Phase::Passive { next_try_at: 1_010 });
}

#[test]
fn refused_writes_and_newer_epochs_step_down() {
    for why in [
        WriteRefusal::Fenced,
        WriteRefusal::Lost,
        WriteRefusal::StaleVersion,
    ] {
        let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
        activate(&mut c, 0, 2, None);
        c.handle(1, Input::PeerCaughtUp { peer: "b".into() });
        drain(&mut c);
        c.handle(2, Input::StateWriteRefused { epoch: 2, why });
        let outs = drain(&mut c);
        assert!(outs.contains(&Output::StopAccepting), "{why:?}");
        assert!(!c.is_accepting());
    }
    // A refused activation write: never accepted, released.
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    c.handle(0, Input::Tick);
    c.handle(0, Input::Acquired { epoch: 1 });
    c.handle(0, Input::StateRead { state: None });
    drain(&mut c);
    c.handle(
        0,
        Input::StateWriteRefused {
            epoch: 1,
            why: WriteRefusal::Unavailable,
        },
    );
    assert_eq!(actions(&mut c), vec![Output::Release]);
    // A mirror event of a newer epoch: someone else took over.
    let mut c = Coordinator::new(config("a", &["b"]), EpochFence::new());
    activate(&mut c, 0, 2, None);
    assert_eq!(c.admit(5, 2), Ok(()));
    assert_eq!(c.admit(5, 3), Ok(()));
    let outs = drain(&mut c);
    assert!(outs.contains(&Output::StopAccepting));
    assert_eq!(c.admit(6, 2), Err(StaleEpoch { got: 2, newest: 3 }));
}

#[test]
fn shutdown_releases_and_a_late_acquisition_is_given_back() {
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    activate(&mut c, 0, 1, None);
    c.handle(1, Input::Shutdown);
    assert_eq!(
        actions(&mut c),
        vec![Output::StopAccepting, Output::Release, Output::Stopped]
    );
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    c.handle(0, Input::Tick);
    c.handle(0, Input::Shutdown);
    drain(&mut c);
    c.handle(1, Input::Acquired { epoch: 1 });
    assert_eq!(actions(&mut c), vec![Output::Release]);
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn a_peer_learned_at_run_time_counts_like_a_configured_one() {
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    activate(&mut c, 0, 1, None);
    // Unknown: its news is ignored.
    c.handle(1, Input::PeerCaughtUp { peer: "b".into() });
    assert_eq!(c.required_acks(), Some(set(&[])));
    assert_eq!(actions(&mut c), vec![]);
    assert_eq!(c.learn_peer("b".into()), Ok(true));
    assert_eq!(c.learn_peer("b".into()), Ok(false), "already known");
    assert_eq!(
        c.learn_peer("a".into()),
        Err(CoordinatorConfigError::BadPeerName("a".into())),
        "its own name"
    );
    assert_eq!(
        c.learn_peer("x y".into()),
        Err(CoordinatorConfigError::BadPeerName("x y".into()))
    );
    assert!(c.learn_peer(String::new()).is_err());
    assert!(c.config().validate().is_ok());
    // Known now: it joins once caught up, receipts wait for it.
    c.handle(2, Input::PeerCaughtUp { peer: "b".into() });
    assert_eq!(c.required_acks(), Some(set(&["b"])));
    assert_eq!(
        actions(&mut c),
        vec![
            Output::RequiredAcks {
                epoch: 1,
                peers: set(&["b"])
            },
            Output::WriteState {
                epoch: 1,
                in_sync: set(&["a", "b"])
            }
        ]
    );
}

#[test]
fn learned_peers_are_bounded() {
    let mut c = Coordinator::new(config("a", &[]), EpochFence::new());
    for i in 0..PEERS_MAX {
        assert_eq!(c.learn_peer(format!("p{i}")), Ok(true));
    }
    assert_eq!(
        c.learn_peer("one-too-many".into()),
        Err(CoordinatorConfigError::TooManyPeers(PEERS_MAX + 1))
    );
    // A known one still passes at the bound.
    assert_eq!(c.learn_peer("p0".into()), Ok(false));
    assert_eq!(c.config().peers.len(), PEERS_MAX);
    assert!(c.config().validate().is_ok());
}
