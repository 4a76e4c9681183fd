//! Whether producers may add messages now: the disk limit
//! (`--max-disk-usage`) and the memory limit (`--max-memory-bytes`) under
//! the address-full policy (`--address-full-policy`).
//!
//! The driver reads the usage of the disk that holds the journal and
//! reports it ([`Input::Disk`](super::Input)); after every input the node
//! compares the broker's bytes with the memory limit. Adapters ask [`SessionCx::gate`](super::SessionCx) before
//! they take a message. `page` and `block` hold producers back (STOMP: the
//! SEND waits and the connection is not read; AMQP: producers get no more
//! credit), `fail` refuses the send with a clear error. Consumers, acks and
//! everything else go on: they are what frees the space.

use std::fmt;

use super::config::{FullPolicy, NodeConfig};

/// One reading of the disk that holds the journal.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes in use plus those the broker could still use (as `df`
    /// counts: space reserved for root is left out).
    pub total_bytes: u64,
}

impl DiskUsage {
    /// Used share in tenths of a percent (0..=1000); 0 for a filesystem
    /// that reports no size (nothing to go by).
    pub fn permille(self) -> u32 {
        if self.total_bytes == 0 {
            return 0;
        }
        let used = self.used_bytes.min(self.total_bytes) as u128;
        (used * 1000 / self.total_bytes as u128) as u32
    }
}

/// Tenths of a percent, printed as a percentage ("93.1%").
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Permille(pub u32);

impl fmt::Display for Permille {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
    }
}

/// What producers may do now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Gate<'a> {
    Open,
    /// Hold the send back until the node says producers may go on.
    Block,
    /// Refuse the send; the text says why.
    Fail(&'a str),
}

/// The node's view of its limits.
#[derive(Clone, Debug, Default)]
pub(crate) struct Admission {
    /// The last disk reading, if any.
    pub disk: Option<DiskUsage>,
    /// Why the disk stops producers now (`None`: it does not).
    disk_full: Option<String>,
    /// Why memory stops producers now (`None`: it does not).
    memory_full: Option<String>,
}

/// What a reading changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    /// This limit now stops producers; the text says why.
    Full(String),
    /// This limit no longer stops producers (another one still may).
    Room,
}

/// Below this share of `--max-memory-bytes` producers held back by memory
/// go on again (in tenths of a percent): a margin, so that one ack and one
/// send do not block and resume producers in turn.
pub const MEMORY_RESUME_PERMILLE: u64 = 950;

fn stopped(why: String, policy: FullPolicy) -> String {
    match policy {
        FullPolicy::Fail => format!("{why}: sends refused (address-full-policy fail)"),
        FullPolicy::Block => format!("{why}: producers blocked"),
        FullPolicy::Page => {
            format!("{why}: producers blocked (paging keeps bodies on disk; what is left in memory is at the limit)")
        }
    }
}

impl Admission {
    /// Why producers are stopped now, if they are.
    pub fn full(&self) -> Option<&str> {
        self.disk_full.as_deref().or(self.memory_full.as_deref())
    }

    /// Takes a disk reading against the limit (`max_permille` 1000: no
    /// limit but a full disk's own).
    pub fn on_disk(&mut self, usage: DiskUsage, max_permille: u32, policy: FullPolicy) -> Change {
        self.disk = Some(usage);
        let used = usage.permille();
        // A filesystem that reports no size (some pseudo and network ones)
        // says nothing: it must not stop producers for good.
        let over =
            usage.total_bytes > 0 && (used > max_permille || usage.used_bytes >= usage.total_bytes);
        match (&self.disk_full, over) {
            (None, true) => {
                let why = stopped(
                    format!(
                        "disk usage {} is above --max-disk-usage {}",
                        Permille(used),
                        Permille(max_permille.min(1000))
                    ),
                    match policy {
                        // A full disk has nowhere to page to.
                        FullPolicy::Page => FullPolicy::Block,
                        p => p,
                    },
                );
                self.disk_full = Some(why.clone());
                Change::Full(why)
            }
            (Some(_), false) => {
                self.disk_full = None;
                Change::Room
            }
            _ => Change::None,
        }
    }

    /// Takes the bytes the broker holds against `--max-memory-bytes`
    /// (`max` 0: no limit).
    pub fn on_memory(&mut self, held: u64, max: u64, policy: FullPolicy) -> Change {
        if max == 0 {
            return Change::None;
        }
        match &self.memory_full {
            None if held >= max => {
                let why = stopped(
                    format!("messages hold {held} bytes, --max-memory-bytes is {max}"),
                    policy,
                );
                self.memory_full = Some(why.clone());
                Change::Full(why)
            }
            Some(_) if (held as u128) * 1000 < (max as u128) * MEMORY_RESUME_PERMILLE as u128 => {
                self.memory_full = None;
                Change::Room
            }
            _ => Change::None,
        }
    }

    /// What producers may do now under `config`'s policy.
    pub fn gate(&self, config: &NodeConfig) -> Gate<'_> {
        #[cfg(feature = "planted-bugs")]
        if config.planted_bug == Some(super::PlantedBug::DiskLimitIgnored) {
            return Gate::Open;
        }
        self.gate_under(config.address_full_policy)
    }

    fn gate_under(&self, policy: FullPolicy) -> Gate<'_> {
        match (self.full(), policy) {
            (None, _) => Gate::Open,
            (Some(why), FullPolicy::Fail) => Gate::Fail(why),
            (Some(_), FullPolicy::Page | FullPolicy::Block) => Gate::Block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64) -> DiskUsage {
        DiskUsage {
            used_bytes: used,
            total_bytes: 1000,
        }
    }

    #[test]
    fn over_the_limit_then_back() {
        let mut a = Admission::default();
        assert_eq!(a.on_disk(usage(900), 900, FullPolicy::Page), Change::None);
        assert_eq!(a.gate_under(FullPolicy::Page), Gate::Open);
        let Change::Full(why) = a.on_disk(usage(931), 900, FullPolicy::Block) else {
            panic!("not full");
        };
        assert_eq!(
            why,
            "disk usage 93.1% is above --max-disk-usage 90.0%: producers blocked"
        );
        assert_eq!(a.on_disk(usage(950), 900, FullPolicy::Block), Change::None);
        assert_eq!(a.gate_under(FullPolicy::Block), Gate::Block);
        assert_eq!(a.on_disk(usage(899), 900, FullPolicy::Block), Change::Room);
        assert_eq!(a.gate_under(FullPolicy::Block), Gate::Open);
    }

    #[test]
    fn memory_stops_producers_and_resumes_below_a_margin() {
        let mut a = Admission::default();
        assert_eq!(a.on_memory(10_000, 0, FullPolicy::Block), Change::None);
        assert_eq!(a.on_memory(999, 1000, FullPolicy::Block), Change::None);
        let Change::Full(why) = a.on_memory(1000, 1000, FullPolicy::Page) else {
            panic!("not full");
        };
        assert_eq!(
            why,
            "messages hold 1000 bytes, --max-memory-bytes is 1000: producers blocked (paging keeps bodies on disk; what is left in memory is at the limit)"
        );
        assert_eq!(a.on_memory(960, 1000, FullPolicy::Page), Change::None);
        assert_eq!(a.gate_under(FullPolicy::Page), Gate::Block);
        // The disk full too: both must clear.
        assert!(matches!(
            a.on_disk(usage(990), 900, FullPolicy::Page),
            Change::Full(_)
        ));
        assert_eq!(a.on_memory(949, 1000, FullPolicy::Page), Change::Room);
        assert_eq!(a.gate_under(FullPolicy::Page), Gate::Block);
        assert_eq!(a.on_disk(usage(100), 900, FullPolicy::Page), Change::Room);
        assert_eq!(a.gate_under(FullPolicy::Page), Gate::Open);
    }

    #[test]
    fn fail_refuses_and_a_full_disk_is_full_without_a_limit() {
        let mut a = Admission::default();
        assert_eq!(a.on_disk(usage(999), 1000, FullPolicy::Fail), Change::None);
        assert!(matches!(
            a.on_disk(usage(1000), 1000, FullPolicy::Fail),
            Change::Full(_)
        ));
        let Gate::Fail(why) = a.gate_under(FullPolicy::Fail) else {
            panic!("not failing");
        };
        assert!(
            why.ends_with("sends refused (address-full-policy fail)"),
            "{why}"
        );
        let sizeless = DiskUsage {
            used_bytes: 0,
            total_bytes: 0,
        };
        assert_eq!(sizeless.permille(), 0);
        assert_eq!(a.on_disk(usage(500), 1000, FullPolicy::Fail), Change::Room);
        assert_eq!(a.on_disk(sizeless, 900, FullPolicy::Fail), Change::None);
        assert_eq!(a.gate_under(FullPolicy::Fail), Gate::Open);
        assert_eq!(Permille(5).to_string(), "0.5%");
    }
}
