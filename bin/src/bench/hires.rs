//! Sub-millisecond sleeps for the producers' open-loop schedule.
//!
//! Tokio's timer fires on whole milliseconds. At `--rate 5000` a message is
//! due every 0.2 ms, so a producer waiting on it woke late and wrote its
//! messages 0.13-0.15 ms after their scheduled time at the median, 0.5 ms at
//! p99 and 1.4-2.1 ms at p99.9 (measured 2026-12-05 against an idle Halyard
//! node); open-loop latency counts from the scheduled time, so that lateness
//! was reported as the broker's. A Linux `timerfd` in Tokio's reactor wakes
//! the task at the nanosecond asked for, plus scheduling. Where a timerfd
//! cannot be made the producer falls back to Tokio's timer and says so.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A one-shot timer a producer re-arms before every wait. Cancel-safe: a
/// wait dropped in a `select!` leaves at most a stale expiry, which the next
/// wait's re-arm clears (setting a timerfd resets its expiry count) and its
/// read then finds nothing and waits again.
pub struct Timer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Timer {
    /// A timerfd-backed timer, or Tokio's (with a warning) if the system
    /// refuses one.
    pub fn new() -> Timer {
        match Timer::timerfd() {
            Ok(fd) => Timer { fd: Some(fd) },
            Err(e) => {
                eprintln!(
                    "bench: warning: no timerfd ({e}); open-loop sends follow Tokio's 1 ms timer and may go out up to about 1 ms late"
                );
                Timer { fd: None }
            }
        }
    }

    fn timerfd() -> io::Result<AsyncFd<OwnedFd>> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: an OwnedFd is a valid open descriptor, and the AsyncFd
        // owns it, so it stays the same open file until the AsyncFd drops.
        Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
    }

    /// Waits until `deadline` (at once if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) {
        let Some(fd) = &self.fd else {
            tokio::time::sleep_until(deadline.into()).await;
            return;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if let Err(e) = arm(fd, left) {
            // Not expected once the fd exists; a late wake beats none.
            eprintln!("bench: warning: timerfd_settime failed ({e}); using Tokio's timer");
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                tokio::time::sleep_until(deadline.into()).await;
                return;
            };
            let mut expirations = [0u8; 8];
            match ready.try_io(|f| {
                rustix::io::read(f.get_ref(), &mut expirations).map_err(io::Error::from)
            }) {
                Ok(Ok(_)) => return,
                // A stale readiness: the expiry it stood for was cleared by
                // re-arming. Tokio has cleared the readiness; wait again.
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline.into()).await;
                    return;
                }
                Err(_would_block) => {}
            }
        }
    }
}

/// Arms the timer to fire once, `after` from now (never zero: that disarms).
fn arm(fd: &AsyncFd<OwnedFd>, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: after.as_secs() as i64,
            tv_nsec: i64::from(after.subsec_nanos()),
        },
    };
    timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_wakes_before_the_deadline() {
        let mut t = Timer::new();
        assert!(t.fd.is_some(), "Linux has timerfd");
        let mut due = Instant::now();
        for _ in 0..50 {
            due += Duration::from_micros(200);
            t.sleep_until(due).await;
            assert!(Instant::now() >= due, "woke before the deadline");
        }
    }

    #[tokio::test]
    async fn is_armed_to_the_microsecond() {
        // What the kernel holds, not how soon a busy machine runs the task:
        // armed for 250 µs, the timer has at most that left (Tokio's would
        // round up to the next whole millisecond).
        let t = Timer::new();
        let fd = t.fd.as_ref().expect("Linux has timerfd");
        arm(fd, Duration::from_micros(250)).unwrap();
        let left = rustix::time::timerfd_gettime(fd.get_ref())
            .unwrap()
            .it_value;
        let left_ns = left.tv_sec * 1_000_000_000 + left.tv_nsec;
        assert!(left_ns > 0, "the timer is armed");
        assert!(left_ns <= 250_000, "armed for {left_ns} ns, not 250 µs");
    }

    #[tokio::test]
    async fn a_dropped_wait_does_not_cut_the_next_short() {
        let mut t = Timer::new();
        // Armed for 1 ms, then dropped at once.
        tokio::select! {
            biased;
            _ = t.sleep_until(Instant::now() + Duration::from_millis(1)) => panic!("too soon"),
            _ = std::future::ready(()) => {}
        }
        tokio::time::sleep(Duration::from_millis(3)).await; // the stale expiry fires
        let due = Instant::now() + Duration::from_millis(5);
        t.sleep_until(due).await;
        assert!(Instant::now() >= due, "a stale expiry ended the wait early");
    }

    #[tokio::test]
    async fn a_past_deadline_returns_without_arming() {
        let mut t = Timer::new();
        let start = Instant::now();
        t.sleep_until(start - Duration::from_millis(5)).await;
        t.sleep_until(start).await;
        let fd = t.fd.as_ref().expect("Linux has timerfd");
        let left = rustix::time::timerfd_gettime(fd.get_ref())
            .unwrap()
            .it_value;
        assert_eq!((left.tv_sec, left.tv_nsec), (0, 0), "never armed");
    }
}
