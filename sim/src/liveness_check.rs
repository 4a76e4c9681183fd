//! The liveness rule: once the faults are over (every cut healed, every
//! crashed node restarted, the last pause ended), exactly one node is live
//! within a bound, and from then on never two at once nor none for longer
//! than the bound (a failback's handover leaves none for a moment). Within
//! the bound two may be live for a while: a live that was cut off or
//! paused learns only then that it was replaced.
//!
//! Safety does not need this (fencing refuses a second writer), but a
//! failure detector that keeps suspecting, or a node that stays live after
//! a newer live fenced it, breaks it: the cluster churns, or two nodes take
//! clients that one of them can no longer serve.

use halyard_core::Millis;

/// How long, beyond the lock group's session timeout, the cluster may take
/// to settle on one live node once the faults are over: the lock's holder
/// notices it lost it, a backup loads the journal and writes its
/// activation.
pub(crate) const SLACK_MS: u64 = 5_000;

/// How long one node alone must have been live before a run may end.
const STABLE_MS: u64 = 1_000;

#[derive(Debug, Default)]
pub(crate) struct LivenessWatch {
    bound_ms: u64,
    /// The nodes' names by index, for the report.
    names: Vec<String>,
    /// When the faults were over; `None` until they were healed.
    settle_at: Option<Millis>,
    /// The live nodes now, and since when.
    live: Vec<usize>,
    since: Millis,
    /// When, after settling, one node alone was live, never two after.
    reached: Option<Millis>,
    violation: Option<String>,
}

impl LivenessWatch {
    pub(crate) fn new(bound_ms: u64, names: Vec<String>) -> LivenessWatch {
        LivenessWatch {
            bound_ms,
            names,
            ..LivenessWatch::default()
        }
    }

    /// The faults are healed; the last pause ends at `settle_at`.
    pub(crate) fn healed(&mut self, settle_at: Millis) {
        self.settle_at = Some(settle_at);
    }

    /// The live nodes may have changed (a node started or stopped serving,
    /// or crashed).
    pub(crate) fn changed(&mut self, now: Millis, live: Vec<usize>) {
        if live == self.live {
            return;
        }
        self.close_interval(now);
        self.live = live;
        self.since = now;
    }

    /// Judges the interval the current live set held, up to `now`.
    fn close_interval(&mut self, now: Millis) {
        let Some(settle) = self.settle_at else {
            return;
        };
        if now < settle || self.violation.is_some() {
            return;
        }
        let from = self.since.max(settle);
        let bound = settle + self.bound_ms;
        match self.live.len() {
            1 if self.reached.is_none() => {
                self.reached = Some(from);
                if from > bound {
                    self.violation = Some(format!(
                        "a single live node ({}) only {} ms after the faults were over (bound {} ms)",
                        self.who(),
                        from - settle,
                        self.bound_ms
                    ));
                }
            }
            1 => {}
            0 => {
                if now - from > self.bound_ms {
                    self.violation = Some(format!(
                        "no live node from {from} to {now} ms, after the faults were over"
                    ));
                }
            }
            n => {
                // Converging: a live that has not yet learnt it was
                // replaced. Past the bound it is a second live.
                self.reached = None;
                if now > bound {
                    self.violation = Some(format!(
                        "{n} live nodes at once ({}) at {} ms, {} ms after the faults were over",
                        self.who(),
                        from.max(bound),
                        from.max(bound) - settle
                    ));
                }
            }
        }
    }

    /// The live nodes' names.
    fn who(&self) -> String {
        self.live
            .iter()
            .map(|&i| self.names.get(i).map_or("?", String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether a run may end here: the faults are over and one node alone
    /// has been live for a while (the run goes on a little after that, and
    /// the rule watches to the end). A cluster that keeps changing its live
    /// node never settles: its run goes on until it is judged.
    pub(crate) fn settled(&self, now: Millis) -> bool {
        self.live.len() == 1
            && self
                .settle_at
                .is_some_and(|s| now >= self.since.max(s) + STABLE_MS)
    }

    /// The verdict at the end of the run.
    pub(crate) fn verdict(&mut self, now: Millis) -> Option<String> {
        self.close_interval(now);
        if self.violation.is_none() {
            if let (Some(settle), None) = (self.settle_at, self.reached) {
                self.violation = Some(format!(
                    "no single live node in the {} ms after the faults were over ({} live at the end)",
                    now.saturating_sub(settle),
                    self.live.len()
                ));
            }
        }
        self.violation.clone()
    }

    /// When the faults were over, and how long one node alone took to be
    /// live after that (for the report).
    pub(crate) fn settle_delay(&self) -> Option<u64> {
        Some(self.reached? - self.settle_at?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    #[test]
    fn one_live_node_soon_after_the_faults_passes() {
        let mut w = LivenessWatch::new(8_000, names());
        w.changed(100, vec![0]);
        w.changed(500, vec![0, 1]);
        w.healed(1_000);
        assert!(!w.settled(2_000));
        w.changed(3_000, vec![1]);
        assert!(!w.settled(3_500));
        assert!(w.settled(4_000));
        assert_eq!(w.verdict(6_000), None);
        assert_eq!(w.settle_delay(), Some(2_000));
    }

    #[test]
    fn two_live_nodes_after_settling_are_caught() {
        let mut w = LivenessWatch::new(8_000, names());
        w.changed(100, vec![0]);
        w.healed(1_000);
        // Converging within the bound is fine.
        w.changed(2_000, vec![0, 2]);
        w.changed(2_100, vec![2]);
        assert_eq!(w.verdict(5_000), None);
        assert_eq!(w.settle_delay(), Some(1_100));
        w.changed(9_500, vec![0, 2]);
        w.changed(9_600, vec![0]);
        let v = w.verdict(12_000).expect("a violation");
        assert!(
            v.contains("2 live nodes at once (n1, n3) at 9500 ms"),
            "{v}"
        );
    }

    #[test]
    fn no_single_live_node_in_time_is_caught() {
        let mut w = LivenessWatch::new(8_000, names());
        w.changed(100, vec![0, 1]);
        w.healed(1_000);
        w.changed(10_000, vec![1]);
        let v = w.verdict(20_000).expect("a violation");
        assert!(
            v.contains("2 live nodes at once (n1, n2) at 9000 ms"),
            "{v}"
        );
        let mut late = LivenessWatch::new(8_000, names());
        late.healed(1_000);
        late.changed(10_000, vec![2]);
        let v = late.verdict(20_000).expect("a violation");
        assert!(v.contains("no live node from 1000 to 10000"), "{v}");
        let mut never = LivenessWatch::new(8_000, names());
        never.healed(0);
        never.changed(1_000, vec![0, 1]);
        let v = never.verdict(5_000).expect("a violation");
        assert!(v.contains("no single live node in the 5000 ms"), "{v}");
    }

    #[test]
    fn a_short_handover_passes_a_long_gap_does_not() {
        let mut w = LivenessWatch::new(8_000, names());
        w.healed(0);
        w.changed(100, vec![1]);
        w.changed(3_000, vec![]);
        w.changed(6_000, vec![0]);
        assert_eq!(w.verdict(9_000), None);
        w.changed(10_000, vec![]);
        let v = w.verdict(30_000).expect("a violation");
        assert!(v.contains("no live node from 10000"), "{v}");
    }
}
