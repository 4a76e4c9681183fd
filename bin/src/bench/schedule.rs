//! When each message is due: closed loop (`--rate max`) or an open-loop
//! schedule at fixed intervals.
//!
//! In open loop the latency of a message is measured from the moment it was
//! *scheduled*, not the moment it was written: if the broker stalls and the
//! producer falls behind, the messages that wait are charged for the wait.
//! That is the correction for coordinated omission (Gil Tene): a closed-loop
//! tester that waits politely for the broker before sending the next message
//! reports the stall once instead of once per message it did not send.

use std::fmt;
use std::str::FromStr;

/// Target total send rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Closed loop: send whenever the window has room.
    Max,
    /// Open loop: this many messages per second in total, over all producers.
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(Rate::PerSec(r)),
            _ => Err(format!(
                "invalid rate {s:?}: expected `max` or messages per second (> 0)"
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSec(r) => write!(f, "{r}"),
        }
    }
}

/// The open-loop schedule of one producer out of `producers`.
///
/// The total rate is split evenly and the producers are interleaved, so the
/// merged stream of all producers is evenly spaced: message `k` of producer
/// `index` is global slot `k * producers + index`, due at
/// `start_ns + slot / rate`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start_ns: u64,
    interval_ns: f64,
    producers: u64,
    index: u64,
}

impl Schedule {
    pub fn new(start_ns: u64, rate_per_sec: f64, producers: usize, index: usize) -> Schedule {
        assert!(rate_per_sec > 0.0 && rate_per_sec.is_finite());
        assert!(index < producers.max(1));
        Schedule {
            start_ns,
            interval_ns: 1e9 / rate_per_sec,
            producers: producers.max(1) as u64,
            index: index as u64,
        }
    }

    /// Bench-clock time (ns) at which message `k` of this producer is due.
    pub fn due_ns(&self, k: u64) -> u64 {
        let slot = k.saturating_mul(self.producers).saturating_add(self.index);
        self.start_ns + (slot as f64 * self.interval_ns).round() as u64
    }

    /// How many messages of this producer are due strictly before `t_ns`.
    pub fn count_before(&self, t_ns: u64) -> u64 {
        if t_ns <= self.due_ns(0) {
            return 0;
        }
        // Estimate from the rate, then correct the rounding either way.
        let slots = (t_ns - self.start_ns) as f64 / self.interval_ns;
        let mut k = ((slots - self.index as f64) / self.producers as f64)
            .ceil()
            .max(0.0) as u64;
        while k > 0 && self.due_ns(k - 1) >= t_ns {
            k -= 1;
        }
        while self.due_ns(k) < t_ns {
            k += 1;
        }
        k
    }
}

/// Which part of the run a bench-clock instant falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Producers start.
    pub start_ns: u64,
    /// Warm-up ends; recording starts.
    pub warm_end_ns: u64,
    /// Producers stop; recording of new sends ends.
    pub end_ns: u64,
}

impl Timeline {
    pub fn new(start_ns: u64, warmup_ns: u64, duration_ns: u64) -> Timeline {
        Timeline {
            start_ns,
            warm_end_ns: start_ns + warmup_ns,
            end_ns: start_ns + warmup_ns + duration_ns,
        }
    }

    /// True for instants in the measured window `[warm_end, end)`.
    pub fn measured(&self, t_ns: u64) -> bool {
        t_ns >= self.warm_end_ns && t_ns < self.end_ns
    }

    /// Whole seconds since producers started (instants before the start
    /// count as second 0).
    pub fn second(&self, t_ns: u64) -> usize {
        (t_ns.saturating_sub(self.start_ns) / 1_000_000_000) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_parses_max_and_numbers() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("MAX".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("5000".parse::<Rate>(), Ok(Rate::PerSec(5000.0)));
        assert_eq!("0.5".parse::<Rate>(), Ok(Rate::PerSec(0.5)));
        for bad in ["0", "-3", "fast", "", "inf", "NaN"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(Rate::PerSec(5000.0).to_string(), "5000");
        assert_eq!(Rate::Max.to_string(), "max");
    }

    #[test]
    fn one_producer_is_evenly_spaced() {
        let s = Schedule::new(1_000, 1000.0, 1, 0);
        assert_eq!(s.due_ns(0), 1_000);
        assert_eq!(s.due_ns(1), 1_001_000);
        assert_eq!(s.due_ns(1000), 1_000_001_000);
    }

    #[test]
    fn producers_interleave_into_one_even_stream() {
        // 3 producers sharing 3000 msg/s: each sends 1000/s, offset by 1/3 ms.
        let all: Vec<u64> = {
            let mut v = Vec::new();
            for i in 0..3 {
                let s = Schedule::new(0, 3000.0, 3, i);
                v.extend((0..100).map(|k| s.due_ns(k)));
            }
            v.sort_unstable();
            v
        };
        for (n, t) in all.iter().enumerate() {
            let want = (n as f64 * 1e9 / 3000.0).round() as u64;
            assert_eq!(*t, want, "slot {n}");
        }
        // Each producer alone runs at a third of the rate.
        let p1 = Schedule::new(0, 3000.0, 3, 1);
        assert_eq!(p1.due_ns(1) - p1.due_ns(0), 1_000_000);
    }

    #[test]
    fn count_before_agrees_with_due_ns() {
        for (rate, producers) in [(5000.0, 1), (5000.0, 4), (333.0, 3), (7.5, 2), (1e6, 7)] {
            for i in 0..producers {
                let s = Schedule::new(123, rate, producers, i);
                for t in [
                    0,
                    123,
                    124,
                    1_000_000,
                    999_999_999,
                    1_000_000_123,
                    3_000_000_000,
                ] {
                    let k = s.count_before(t);
                    assert!(k == 0 || s.due_ns(k - 1) < t, "rate {rate} p{i} t {t}");
                    assert!(s.due_ns(k) >= t, "rate {rate} p{i} t {t}");
                }
            }
        }
    }

    #[test]
    fn count_due_in_a_second_matches_the_rate() {
        for (rate, producers) in [(5000.0, 1), (5000.0, 4), (333.0, 3), (7.5, 2)] {
            let mut due = 0u64;
            for i in 0..producers {
                let s = Schedule::new(0, rate, producers, i);
                due += (0..).take_while(|k| s.due_ns(*k) < 1_000_000_000).count() as u64;
            }
            assert!(
                (due as f64 - rate).abs() <= producers as f64,
                "rate {rate} producers {producers}: {due} due in 1 s"
            );
        }
    }

    #[test]
    fn timeline_windows() {
        let t = Timeline::new(10, 2_000_000_000, 3_000_000_000);
        assert!(!t.measured(10));
        assert!(!t.measured(2_000_000_009));
        assert!(t.measured(2_000_000_010));
        assert!(t.measured(5_000_000_009));
        assert!(!t.measured(5_000_000_010));
        assert_eq!(t.second(0), 0);
        assert_eq!(t.second(1_000_000_010), 1);
    }
}
