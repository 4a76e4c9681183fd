//! The run's timeline: every line is hashed (so two runs of one seed can be
//! compared byte for byte) and kept only when a trace was asked for.

pub struct Trace {
    keep: bool,
    lines: Vec<String>,
    hash: u64,
}

impl Trace {
    pub fn new(keep: bool) -> Trace {
        Trace {
            keep,
            lines: Vec::new(),
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    pub fn line(&mut self, now: u64, who: &str, what: &str) {
        let l = format!("{:>6}.{:03} {:<6} {}", now / 1000, now % 1000, who, what);
        for b in l.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        if self.keep {
            self.lines.push(l);
        }
    }

    /// A line for a printed trace only; not part of the hash.
    pub fn detail(&mut self, now: u64, who: &str, what: &str) {
        if self.keep {
            self.lines.push(format!(
                "{:>6}.{:03} {:<6} {}",
                now / 1000,
                now % 1000,
                who,
                what
            ));
        }
    }

    pub fn keeps(&self) -> bool {
        self.keep
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}
