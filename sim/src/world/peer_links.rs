//! The nodes' peer links (fenced preemption), without the world: each
//! node's `PeerWatch` over the others, when status lines and closes sent
//! now arrive, and the faults that strike only these links (a cut between
//! two nodes, a slow peer network). `peers` moves them through the world.
//!
//! Lines on a link arrive in order (a TCP connection): a line sent later
//! never overtakes an earlier one, so a slow line delays those behind it.

use std::collections::BTreeSet;

use halyard_core::ha::watch::PeerWatch;
use halyard_core::Millis;

use super::network;
use crate::config::{DriverBug, PlantedBug, SimConfig};
use crate::rng::Rng;

/// Mixed into the seed for the links' latencies, drawn from none of the
/// world's generators.
const PEER_LINK_SEED: u64 = 0x9EE2_11A6_0016_0001;

/// Counters for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PreemptionStats {
    /// A watch suspected a live peer (each is fed to the node).
    pub(crate) suspicions: u64,
    /// ... whose suspect still ran as the live it was heard as.
    pub(crate) false_suspicions: u64,
    /// A waiting backup went live without the lock.
    pub(crate) preemptions: u64,
    /// ... on a false suspicion.
    pub(crate) false_preemptions: u64,
    /// A live node stepped down on hearing a newer live peer.
    pub(crate) superseded: u64,
    /// A live node stepped down because a write of its was fenced.
    pub(crate) fenced: u64,
}

/// What the line last sent on a link said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LastLine {
    #[default]
    Nothing,
    Backup,
    Live,
}

#[derive(Clone, Copy, Debug, Default)]
struct Link {
    /// When the last line sent on it arrives.
    arrives_at: Millis,
    last: LastLine,
}

pub(super) struct PeerLinks {
    pub(super) enabled: bool,
    pub(super) heartbeat_ms: u64,
    suspect_ms: u64,
    nodes: usize,
    /// Each node's watch over the others (by node index; its own slot is
    /// never fed); `None` while it is down.
    watches: Vec<Option<PeerWatch>>,
    /// Each node's watch tick already scheduled, if any.
    pub(super) tick_at: Vec<Option<Millis>>,
    /// Links by `from * nodes + to`.
    links: Vec<Link>,
    /// Pairs of nodes (lower index first) that cannot reach each other.
    cuts: BTreeSet<(usize, usize)>,
    /// Extra delay of every line while the peer network is slow.
    slow_extra_ms: u64,
    rng: Rng,
    pub(crate) stats: PreemptionStats,
}

/// How long the watches wait before suspecting a silent live peer.
pub(crate) fn suspect_ms(cfg: &SimConfig) -> u64 {
    match cfg.planted_bug {
        // Planted bug: less than one heartbeat.
        Some(PlantedBug::Driver(DriverBug::SuspectWithinHeartbeat)) => {
            (cfg.peer_heartbeat_ms / 2).max(1)
        }
        _ => cfg.peer_suspect_ms,
    }
}

impl PeerLinks {
    pub(super) fn new(cfg: &SimConfig) -> PeerLinks {
        let suspect_ms = suspect_ms(cfg);
        PeerLinks {
            enabled: cfg.preemption,
            heartbeat_ms: cfg.peer_heartbeat_ms,
            suspect_ms,
            nodes: cfg.nodes,
            watches: (0..cfg.nodes).map(|_| None).collect(),
            tick_at: vec![None; cfg.nodes],
            links: vec![Link::default(); cfg.nodes * cfg.nodes],
            cuts: BTreeSet::new(),
            slow_extra_ms: 0,
            rng: Rng::new(cfg.seed ^ PEER_LINK_SEED),
            stats: PreemptionStats::default(),
        }
    }

    /// Node `i` started: a fresh watch, heard nothing yet.
    pub(super) fn booted(&mut self, i: usize) {
        if self.enabled {
            self.watches[i] = Some(PeerWatch::new(self.nodes, self.suspect_ms));
        }
        self.tick_at[i] = None;
    }

    /// Node `i` is down: its watch is gone.
    pub(super) fn crashed(&mut self, i: usize) {
        self.watches[i] = None;
        self.tick_at[i] = None;
    }

    pub(super) fn watch(&mut self, i: usize) -> Option<&mut PeerWatch> {
        self.watches[i].as_mut()
    }

    fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    pub(super) fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert(Self::pair(a, b));
    }

    /// Heals the cut between `a` and `b`; false if there was none.
    pub(super) fn heal_cut(&mut self, a: usize, b: usize) -> bool {
        self.cuts.remove(&Self::pair(a, b))
    }

    pub(super) fn is_cut(&self, a: usize, b: usize) -> bool {
        !self.cuts.is_empty() && self.cuts.contains(&Self::pair(a, b))
    }

    pub(super) fn slow_down(&mut self, extra_ms: u64) {
        self.slow_extra_ms = extra_ms;
    }

    pub(super) fn is_slow(&self) -> bool {
        self.slow_extra_ms > 0
    }

    /// Ends every fault of the links.
    pub(super) fn heal(&mut self) {
        self.cuts.clear();
        self.slow_extra_ms = 0;
    }

    /// When a status line `from` sends `to` now arrives; `None` when it is
    /// not sent (the pair is cut) or need not be: a backup line after a
    /// backup line changes nothing at the receiver (its watch forgot the
    /// peer at the first), so only the lines that matter cost an event.
    pub(super) fn send_line(
        &mut self,
        from: usize,
        to: usize,
        live: bool,
        now: Millis,
    ) -> Option<Millis> {
        if self.is_cut(from, to) {
            return None;
        }
        let line = if live {
            LastLine::Live
        } else {
            LastLine::Backup
        };
        let link = &mut self.links[from * self.nodes + to];
        if line == LastLine::Backup && link.last == LastLine::Backup {
            return None;
        }
        link.last = line;
        let t = now + network::latency(&mut self.rng) + self.slow_extra_ms;
        link.arrives_at = t.max(link.arrives_at);
        Some(link.arrives_at)
    }

    /// When the close of the link `from` (which crashed) to `to` reaches
    /// `to`, after the lines already on their way; `None` when cut.
    pub(super) fn send_close(&mut self, from: usize, to: usize, now: Millis) -> Option<Millis> {
        if self.is_cut(from, to) {
            return None;
        }
        let link = &mut self.links[from * self.nodes + to];
        // The next incarnation's first line goes out, whatever it says.
        link.last = LastLine::Nothing;
        let t = now + network::latency(&mut self.rng) + self.slow_extra_ms;
        link.arrives_at = t.max(link.arrives_at);
        Some(link.arrives_at)
    }
}
