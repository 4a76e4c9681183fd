//! The coordinator checker's rules, checked as the run goes:
//!
//! 1. **One broker per epoch**: no two brokers ever start accepting clients
//!    under one epoch.
//! 2. **At most one at a time, but for the window**: at any virtual instant,
//!    every broker serving clients (accepting, up, not paused) under epoch E
//!    either holds the lock service's lock of epoch E, or the service ended
//!    E's lock (its session expired) no longer than `window_ms` ago: the
//!    holder has not heard of its loss yet. The window is what the lock
//!    client allows itself: 7/5 of the session timeout from its last answer,
//!    so 2/5 of the timeout after the service's expiry, plus one network
//!    delay and two ticks. So two brokers serve at one instant only while
//!    the older one is in its window, and never two holders.
//! 3. **In sync**: a broker starts accepting under epoch E only if the state
//!    E's acquisition found had no in-sync set, an empty one, or one naming
//!    it (the scenario never uses the operator's override).
//! 4. **Fence**: a broker never applies a mirror event stamped with an epoch
//!    older than the newest it had learned of (acquired, read in the state,
//!    applied, or heard in a peer's ack), across restarts.
//! 5. **Liveness**: from `heal + liveness_ms` to the end, exactly one broker
//!    serves clients at every instant.
//! 6. **No receipted message lost** (sync mirroring): a broker that starts
//!    accepting clients holds every message any broker receipted before,
//!    unless an acknowledgement of it was written somewhere. With async
//!    mirroring the messages missing are counted (its window of loss).
//! 7. **Same queues**: at the end (faults healed, clients stopped), every
//!    broker holds the same messages as the one accepting clients.
//! 8. **Failback**: where s0 is the primary with failback allowed, it is
//!    the one accepting clients at the end.

use std::collections::{BTreeMap, BTreeSet};

use halyard_core::coordinator::LockState;

use super::lock_service::Holder;

const VIOLATIONS_MAX: usize = 20;

pub struct CoordChecker {
    pub window_ms: u64,
    /// Epoch -> the broker that started accepting under it.
    started: BTreeMap<u64, usize>,
    /// The newest epoch each broker learned of.
    seen: Vec<u64>,
    pub violations: Vec<String>,
    /// How many found nothing wrong, per rule.
    pub instants_checked: u64,
    sync: bool,
    receipted: BTreeSet<u64>,
    tombstoned: BTreeSet<u64>,
    /// Receipted messages a takeover lost (async mirroring only).
    lost: BTreeSet<u64>,
}

impl CoordChecker {
    pub fn new(brokers: usize, window_ms: u64, sync: bool) -> CoordChecker {
        CoordChecker {
            window_ms,
            started: BTreeMap::new(),
            seen: vec![0; brokers],
            violations: Vec::new(),
            instants_checked: 0,
            sync,
            receipted: BTreeSet::new(),
            tombstoned: BTreeSet::new(),
            lost: BTreeSet::new(),
        }
    }

    pub fn receipted(&mut self, msg: u64) {
        self.receipted.insert(msg);
    }

    pub fn tombstoned(&mut self, msg: u64) {
        self.tombstoned.insert(msg);
    }

    pub fn receipted_count(&self) -> u64 {
        self.receipted.len() as u64
    }

    pub fn tombstoned_count(&self) -> u64 {
        self.tombstoned.len() as u64
    }

    pub fn lost_async(&self) -> u64 {
        self.lost.len() as u64
    }

    /// Rule 6: broker `b` starts accepting in `epoch` holding `holds`.
    pub fn holds_receipted(&mut self, now: u64, b: usize, epoch: u64, holds: &BTreeSet<u64>) {
        let missing: Vec<u64> = self
            .receipted
            .iter()
            .filter(|m| {
                !holds.contains(m) && !self.tombstoned.contains(m) && !self.lost.contains(m)
            })
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        if self.sync {
            self.fail(
                now,
                format!(
                    "s{b} took over in epoch {epoch} without {} receipted message(s) (sync mirroring), first m{}",
                    missing.len(),
                    missing[0]
                ),
            );
        }
        self.lost.extend(missing);
    }

    /// Rule 8 at the end (failback configured for s0).
    pub fn failed_back(&mut self, now: u64, queues: &[(usize, Option<u64>, BTreeSet<u64>)]) {
        if let Some((a, _, _)) = queues.iter().find(|(_, e, _)| e.is_some()) {
            if *a != 0 {
                self.fail(
                    now,
                    format!(
                        "s{a} still active at the end: primary s0 did not get the active role back"
                    ),
                );
            }
        }
    }

    /// Rule 7 at the end: `queues` is (broker, serving epoch, messages) of
    /// every broker up.
    pub fn converged(&mut self, now: u64, queues: &[(usize, Option<u64>, BTreeSet<u64>)]) {
        let Some((a, _, active)) = queues.iter().find(|(_, e, _)| e.is_some()) else {
            return;
        };
        for (b, _, q) in queues.iter().filter(|(b, _, _)| b != a) {
            if q != active {
                let extra = q.difference(active).count();
                let lacks = active.difference(q).count();
                self.fail(
                    now,
                    format!(
                        "after healing s{b}'s queue differs from active s{a}'s: {lacks} message(s) missing, {extra} extra"
                    ),
                );
            }
        }
    }

    fn fail(&mut self, now: u64, what: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(format!("at {now} ms: {what}"));
        }
    }

    pub fn started(&mut self, now: u64, b: usize, epoch: u64, found: Option<&Option<LockState>>) {
        if let Some(other) = self.started.insert(epoch, b) {
            self.fail(
                now,
                format!("two brokers accepting in epoch {epoch}: s{other} and s{b}"),
            );
        }
        match found {
            None => self.fail(
                now,
                format!("s{b} accepting in epoch {epoch}, never acquired"),
            ),
            Some(Some(s)) if !s.in_sync.is_empty() && !s.in_sync.contains(&format!("s{b}")) => {
                let names: Vec<&str> = s.in_sync.iter().map(String::as_str).collect();
                self.fail(
                    now,
                    format!(
                        "s{b} took over in epoch {epoch} outside the in-sync set {{{}}} of epoch {} it read",
                        names.join(", "),
                        s.epoch
                    ),
                );
            }
            _ => {}
        }
    }

    pub fn observed(&mut self, b: usize, epoch: u64) {
        self.seen[b] = self.seen[b].max(epoch);
    }

    pub fn applied(&mut self, now: u64, b: usize, from: usize, epoch: u64) {
        if epoch < self.seen[b] {
            let newest = self.seen[b];
            self.fail(
                now,
                format!("s{b} applied an event of epoch {epoch} from s{from}, older than epoch {newest} it knew"),
            );
        }
        self.observed(b, epoch);
    }

    /// Rule 2 at one instant: `serving` is (broker, epoch) of every broker
    /// serving clients.
    /// `paused_ms(b, end, now)`: how long broker `b` was paused from a
    /// session timeout before the lock's end until now (a paused process
    /// reads the lock service's answers late, and its window runs only
    /// while it runs).
    pub fn instant(
        &mut self,
        now: u64,
        serving: &[(usize, u64)],
        holder: Option<Holder>,
        ended_at: &BTreeMap<u64, u64>,
        paused_ms: impl Fn(usize, u64, u64) -> u64,
    ) {
        self.instants_checked += 1;
        for &(b, epoch) in serving {
            if holder.is_some_and(|h| h.epoch == epoch && h.broker == b) {
                continue;
            }
            match ended_at.get(&epoch) {
                Some(&end)
                    if now.saturating_sub(end) <= self.window_ms + paused_ms(b, end, now) => {}
                Some(&end) => {
                    let others: Vec<String> = serving
                        .iter()
                        .filter(|(o, _)| *o != b)
                        .map(|(o, e)| format!("s{o} (epoch {e})"))
                        .collect();
                    self.fail(
                        now,
                        format!(
                            "s{b} still accepting in epoch {epoch}, {} ms after the lock service ended that lock (window {} ms); also accepting: {}",
                            now - end,
                            self.window_ms,
                            if others.is_empty() { "none".into() } else { others.join(", ") }
                        ),
                    );
                }
                None => self.fail(
                    now,
                    format!("s{b} accepting in epoch {epoch} without holding its lock"),
                ),
            }
        }
    }

    /// Rule 5 at one instant after the liveness bound.
    pub fn live(&mut self, now: u64, serving: &[(usize, u64)]) {
        if serving.len() != 1 {
            let who: Vec<String> = serving
                .iter()
                .map(|(b, e)| format!("s{b} (epoch {e})"))
                .collect();
            self.fail(
                now,
                format!(
                    "{} brokers accepting clients after the faults stopped, one expected: {}",
                    serving.len(),
                    if who.is_empty() {
                        "none".into()
                    } else {
                        who.join(", ")
                    }
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules 1, 2 and 5 fail on runs that break them (rules 3 and 4 are
    /// shown failing by the planted bugs in sim/tests/seeds.rs).
    #[test]
    fn each_rule_can_fail() {
        let mut c = CoordChecker::new(2, 500, true);
        c.started(10, 0, 1, Some(&None));
        c.started(20, 1, 1, Some(&None));
        assert!(c.violations[0].contains("two brokers accepting in epoch 1"));

        let mut c = CoordChecker::new(2, 500, true);
        let holder = Some(Holder {
            session: 7,
            broker: 1,
            epoch: 2,
        });
        let ended = BTreeMap::from([(1, 1_000)]);
        c.instant(1_400, &[(0, 1), (1, 2)], holder, &ended, |_, _, _| 0);
        assert!(
            c.violations.is_empty(),
            "within the window: {:?}",
            c.violations
        );
        c.instant(1_600, &[(0, 1), (1, 2)], holder, &ended, |b, _, _| {
            if b == 1 {
                900
            } else {
                0
            }
        });
        assert!(c.violations[0].contains("600 ms after the lock service ended"));

        let mut c = CoordChecker::new(2, 500, true);
        c.live(5_000, &[]);
        c.live(5_000, &[(0, 3)]);
        c.live(5_000, &[(0, 3), (1, 4)]);
        assert_eq!(c.violations.len(), 2);
    }

    /// Rules 6 and 7 fail on runs that break them; async mirroring counts
    /// its losses instead.
    #[test]
    fn lost_receipts_and_diverged_queues_fail() {
        let held = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        for sync in [true, false] {
            let mut c = CoordChecker::new(2, 500, sync);
            c.receipted(1);
            c.receipted(2);
            c.receipted(3);
            c.tombstoned(3);
            c.holds_receipted(10, 1, 2, &held(&[1, 2]));
            assert!(c.violations.is_empty());
            c.holds_receipted(20, 0, 3, &held(&[1]));
            assert_eq!(c.violations.len(), usize::from(sync), "{:?}", c.violations);
            assert_eq!(c.lost_async(), 1);
            if sync {
                assert!(c.violations[0].contains("without 1 receipted message(s)"));
            }
        }
        let mut c = CoordChecker::new(3, 500, true);
        c.converged(
            30,
            &[
                (0, Some(4), held(&[1, 2])),
                (1, None, held(&[1, 2])),
                (2, None, held(&[2, 5])),
            ],
        );
        assert_eq!(c.violations.len(), 1);
        assert!(c.violations[0]
            .contains("s2's queue differs from active s0's: 1 message(s) missing, 1 extra"));
    }
}
