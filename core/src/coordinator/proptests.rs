//! Property tests: two brokers share a model lock service whose requests
//! and answers are delayed, interleaved, lost to session expiry and
//! answered "unavailable", at random. Whatever happens:
//!
//! - no two brokers ever accept clients under one epoch;
//! - a broker accepts clients under epoch E only after the lock service
//!   confirmed a state of epoch E that holds it;
//! - a broker accepts clients only if it was in the in-sync set the lock
//!   held when it acquired (or there was none, or it was empty), unless the
//!   operator forced it.
//!
//! With failback (a a primary with `--allow-failback`, b a backup, each told
//! at random whether its peer asks for the role, and b's node draining and
//! releasing at random once told to hand back): the same, and b hands back
//! only to a peer the lock service lists in the in-sync set of b's epoch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum Step {
    /// Time passes by this much, then broker i ticks.
    Tick(usize, u64),
    /// The lock service handles broker i's next request (`flaky`: answers
    /// "unavailable"; `applied`: after doing it anyway).
    Serve {
        node: usize,
        flaky: bool,
        applied: bool,
    },
    /// Broker i hears the lock service's next answer.
    Deliver(usize),
    /// The holder's session expires.
    Expire,
    /// Broker i hears from its peer on the mirror link.
    Heard(usize),
    /// Broker i's peer reports it caught up.
    CaughtUp(usize),
    /// Broker i hears whether its peer asks for the active role (failback).
    Prefers(usize, bool),
    /// Broker i's node, told to hand back, has drained: it releases, and a
    /// new machine asks again after the hold-off (as the driver does).
    Drained(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let node = 0usize..2;
    prop_oneof![
        3 => (node.clone(), 0u64..2_500).prop_map(|(n, d)| Step::Tick(n, d)),
        4 => (node.clone(), prop::bool::weighted(0.1), any::<bool>())
            .prop_map(|(node, flaky, applied)| Step::Serve { node, flaky, applied }),
        4 => node.clone().prop_map(Step::Deliver),
        1 => Just(Step::Expire),
        2 => node.clone().prop_map(Step::Heard),
        1 => node.prop_map(Step::CaughtUp),
    ]
}

fn failback_step() -> impl Strategy<Value = Step> {
    let node = 0usize..2;
    prop_oneof![
        12 => step(),
        1 => (node.clone(), prop::bool::weighted(0.8)).prop_map(|(n, p)| Step::Prefers(n, p)),
        2 => node.prop_map(Step::Drained),
    ]
}

/// The lock service, as ZooKeeper or the file lock keep it.
#[derive(Default)]
struct ModelLock {
    holder: Option<(usize, u64)>,
    epoch: u64,
    state: Option<LockState>,
    /// The state as each acquisition found it.
    found_at: BTreeMap<u64, Option<LockState>>,
    /// Every state confirmed, by epoch.
    written: BTreeMap<u64, Vec<BTreeSet<String>>>,
}

struct World {
    lock: ModelLock,
    nodes: Vec<Coordinator>,
    requests: Vec<VecDeque<Output>>,
    answers: Vec<VecDeque<Input>>,
    now: u64,
    started: BTreeMap<u64, usize>,
    /// Broker i was told to hand the active role back.
    handing_back: [bool; 2],
    handbacks: usize,
}

impl World {
    fn new(force: [bool; 2]) -> World {
        World::with(force, false)
    }

    /// `failback`: a is a primary with failback allowed, b a backup.
    fn with(force: [bool; 2], failback: bool) -> World {
        let nodes = (0..2)
            .map(|i| {
                let mut c = CoordinatorConfig::new(NAMES[i]).with_peers([NAMES[1 - i]]);
                c.check_period_ms = 1_000;
                c.peer_timeout_ms = 2_000;
                c.force_active = force[i];
                if failback {
                    c.role = [crate::ha::Role::Primary, crate::ha::Role::Backup][i];
                    c.allow_failback = i == 0;
                }
                Coordinator::new(c, EpochFence::new())
            })
            .collect();
        World {
            lock: ModelLock::default(),
            nodes,
            requests: vec![VecDeque::new(), VecDeque::new()],
            answers: vec![VecDeque::new(), VecDeque::new()],
            now: 0,
            started: BTreeMap::new(),
            handing_back: [false; 2],
            handbacks: 0,
        }
    }

    fn input(&mut self, i: usize, input: Input) -> Result<(), TestCaseError> {
        self.nodes[i].handle(self.now, input);
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::StartAccepting { epoch } => self.check_start(i, epoch)?,
                Output::HandBack { epoch, peer } => {
                    let listed = self.lock.written.get(&epoch).and_then(|w| w.last());
                    prop_assert!(
                        self.nodes[i].config().hands_back()
                            && listed.is_some_and(|s| s.contains(&peer)),
                        "{} hands back to {peer} in epoch {epoch}, which the lock lists as {listed:?}",
                        NAMES[i]
                    );
                    self.handing_back[i] = true;
                    self.handbacks += 1;
                }
                Output::Acquire
                | Output::ReadState
                | Output::WriteState { .. }
                | Output::Release => self.requests[i].push_back(out),
                _ => {}
            }
        }
        Ok(())
    }

    fn check_start(&mut self, i: usize, epoch: u64) -> Result<(), TestCaseError> {
        if let Some(other) = self.started.insert(epoch, i) {
            prop_assert!(
                false,
                "{} and {} both active in epoch {epoch}",
                NAMES[other],
                NAMES[i]
            );
        }
        let name = NAMES[i].to_string();
        let confirmed = self.lock.written.get(&epoch).into_iter().flatten();
        prop_assert!(
            confirmed.clone().any(|s| s.contains(&name)),
            "{name} active in epoch {epoch} without a confirmed state holding it"
        );
        if !self.nodes[i].config().force_active {
            let found = self.lock.found_at.get(&epoch).cloned().flatten();
            if let Some(s) = found {
                prop_assert!(
                    s.in_sync.is_empty() || s.in_sync.contains(&name),
                    "{name} active in epoch {epoch} outside the in-sync set {:?} of epoch {}",
                    s.in_sync,
                    s.epoch
                );
            }
        }
        Ok(())
    }

    fn serve(&mut self, i: usize, flaky: bool, applied: bool) {
        let Some(req) = self.requests[i].pop_front() else {
            return;
        };
        let lock = &mut self.lock;
        let answer = match req {
            Output::Acquire if flaky => Some(Input::AcquireFailed {
                reason: "flaky".into(),
            }),
            Output::Acquire => match lock.holder {
                Some(_) => Some(Input::Busy),
                None => {
                    lock.epoch += 1;
                    lock.holder = Some((i, lock.epoch));
                    lock.found_at.insert(lock.epoch, lock.state.clone());
                    Some(Input::Acquired { epoch: lock.epoch })
                }
            },
            Output::ReadState => Some(Input::StateRead {
                state: lock.state.clone(),
            }),
            Output::WriteState { epoch, in_sync } => {
                let holds = lock.holder == Some((i, epoch)) && lock.epoch == epoch;
                if holds && (!flaky || applied) {
                    lock.state = Some(LockState {
                        epoch,
                        in_sync: in_sync.clone(),
                    });
                    lock.written.entry(epoch).or_default().push(in_sync);
                }
                let why = if flaky {
                    Some(WriteRefusal::Unavailable)
                } else if holds {
                    None
                } else if lock.epoch > epoch {
                    Some(WriteRefusal::Fenced)
                } else {
                    Some(WriteRefusal::Lost)
                };
                Some(match why {
                    None => Input::StateWritten { epoch },
                    Some(why) => Input::StateWriteRefused { epoch, why },
                })
            }
            Output::Release => {
                if lock.holder.is_some_and(|(h, _)| h == i) {
                    lock.holder = None;
                }
                None
            }
            other => unreachable!("not a request: {other:?}"),
        };
        if let Some(a) = answer {
            self.answers[i].push_back(a);
        }
    }

    fn run(&mut self, s: Step) -> Result<(), TestCaseError> {
        match s {
            Step::Tick(i, d) => {
                self.now += d;
                self.input(i, Input::Tick)?;
            }
            Step::Serve {
                node,
                flaky,
                applied,
            } => self.serve(node, flaky, applied),
            Step::Deliver(i) => {
                if let Some(a) = self.answers[i].pop_front() {
                    self.input(i, a)?;
                }
            }
            Step::Expire => {
                if let Some((h, epoch)) = self.lock.holder.take() {
                    self.answers[h].push_back(Input::Lost {
                        epoch,
                        reason: "session expired".into(),
                    });
                }
            }
            Step::Heard(i) => self.input(
                i,
                Input::PeerHeard {
                    peer: NAMES[1 - i].into(),
                },
            )?,
            Step::CaughtUp(i) => self.input(
                i,
                Input::PeerCaughtUp {
                    peer: NAMES[1 - i].into(),
                },
            )?,
            Step::Prefers(i, prefers_active) => self.input(
                i,
                Input::PeerPreference {
                    peer: NAMES[1 - i].into(),
                    prefers_active,
                },
            )?,
            Step::Drained(i) => {
                if std::mem::take(&mut self.handing_back[i]) {
                    self.input(i, Input::Shutdown)?;
                    let c = &self.nodes[i];
                    let fence = EpochFence::starting_at(c.fence().newest());
                    let config = c.config().clone();
                    let hold = config.check_period_ms * HANDBACK_HOLD_OFF_PERIODS;
                    let mut next = Coordinator::new(config, fence);
                    next.hold_off(self.now + hold);
                    self.nodes[i] = next;
                    self.input(i, Input::Tick)?;
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_two_actives_per_epoch_nor_an_active_outside_the_in_sync_set(
        steps in proptest::collection::vec(step(), 1..300),
        force_b in prop::bool::weighted(0.2),
    ) {
        let mut w = World::new([false, force_b]);
        for s in steps {
            w.run(s)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn failback_hands_back_only_to_an_in_sync_primary_and_keeps_the_rules(
        steps in proptest::collection::vec(failback_step(), 1..400),
    ) {
        let mut w = World::with([false, false], true);
        for s in steps {
            w.run(s)?;
        }
    }
}

/// A handback happens in the failback world (the property test is not
/// vacuous): b active, a caught up and asking, b hands back and a takes
/// over under a newer epoch.
#[test]
fn failback_in_the_model() {
    let mut w = World::with([false, false], true);
    let serve = |node| Step::Serve {
        node,
        flaky: false,
        applied: false,
    };
    let script = [
        // b takes the lock first (a is not started yet).
        Step::Tick(1, 0),
        serve(1),
        Step::Deliver(1),
        serve(1),
        Step::Deliver(1),
        serve(1),
        Step::Deliver(1),
        // a's link: asks for failback, caught up; b writes {a, b}.
        Step::Prefers(1, true),
        Step::CaughtUp(1),
        serve(1),
        Step::Deliver(1),
        // b's node drains and releases; a asks, takes it.
        Step::Drained(1),
        serve(1),
        Step::Tick(0, 10),
        serve(0),
        Step::Deliver(0),
        serve(0),
        Step::Deliver(0),
        serve(0),
        Step::Deliver(0),
    ];
    for s in script {
        w.run(s).unwrap();
    }
    assert_eq!(w.handbacks, 1);
    assert_eq!(w.started.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(w.started[&2], 0);
    assert!(w.nodes[0].is_accepting());
    // b holds off: it does not ask before three check periods.
    assert_eq!(w.nodes[1].next_deadline(), Some(10 + 3_000 - 10));
}

/// The scenario the in-sync set exists for: b fell out of a's set, then a
/// dies; b gets the lock and still does not take over.
#[test]
fn a_broker_that_fell_out_of_sync_does_not_take_over_when_the_active_dies() {
    let mut w = World::new([false, false]);
    let script = [
        Step::Tick(0, 0),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Deliver(0),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Deliver(0),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Deliver(0),
        Step::CaughtUp(0),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Deliver(0),
        // b goes silent: a shrinks its in-sync set to {a}.
        Step::Tick(0, 2_500),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Deliver(0),
        Step::Expire,
        Step::Deliver(0),
        Step::Serve {
            node: 0,
            flaky: false,
            applied: false,
        },
        Step::Tick(1, 10),
        Step::Serve {
            node: 1,
            flaky: false,
            applied: false,
        },
        Step::Deliver(1),
        Step::Serve {
            node: 1,
            flaky: false,
            applied: false,
        },
        Step::Deliver(1),
    ];
    for s in script {
        w.run(s).unwrap();
    }
    assert_eq!(w.lock.state, Some(LockState::new(1, ["a"])));
    assert_eq!(w.started.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert!(!w.nodes[1].is_accepting());
    assert_eq!(w.requests[1].front(), Some(&Output::Release));
}
