//! Fenced preemption in the world: every running, unpaused node sends its
//! status to every other node each heartbeat (live with its epoch while it
//! serves, else backup); each node's `PeerWatch` hears the lines, the
//! closes of crashed peers' links and its own ticks, and what it concludes
//! goes to the node as a lock event (`Preempt` for a suspect, `PeerLive`
//! for a live peer). The links themselves are `peer_links`.
//!
//! A pause or a cut is silence, not a close: only a crash closes a link
//! (its kernel closes the socket), after the lines already on their way.

use halyard_core::ha::watch::{PeerStatus, WatchOutput};
use halyard_core::ha::HaState;
use halyard_core::node::{Input, LockEvent};

use super::events::Event;
use super::state::World;
use crate::config::{DriverBug, PlantedBug};

impl World {
    /// Starts the heartbeats (one event for every node's lines).
    pub(super) fn start_peers(&mut self) {
        if self.peers.enabled {
            let t = self.now + self.peers.heartbeat_ms;
            self.at(t, Event::PeerBeat);
        }
    }

    /// Every running, unpaused node sends its status to the others.
    pub(super) fn peer_beat(&mut self) {
        let now = self.now;
        for from in 0..self.nodes.len() {
            let host = &self.nodes[from];
            let Some(node) = host.node.as_ref() else {
                continue;
            };
            if host.paused_until.is_some_and(|until| now < until) {
                continue;
            }
            let serving = matches!(node.state(), HaState::Live | HaState::Draining { .. });
            let live_epoch = serving.then(|| node.epoch());
            for to in 0..self.nodes.len() {
                if to == from || self.nodes[to].node.is_none() {
                    continue;
                }
                let generation = self.nodes[to].generation;
                if let Some(t) = self.peers.send_line(from, to, serving, now) {
                    self.at(
                        t,
                        Event::PeerLine {
                            from,
                            to,
                            generation,
                            live_epoch,
                        },
                    );
                }
            }
        }
        let t = now + self.peers.heartbeat_ms;
        self.at(t, Event::PeerBeat);
    }

    /// Node `i` crashed: its peers' links to it close.
    pub(super) fn peers_see_crash(&mut self, i: usize) {
        self.peers.crashed(i);
        if !self.peers.enabled {
            return;
        }
        for to in 0..self.nodes.len() {
            if to == i || self.nodes[to].node.is_none() {
                continue;
            }
            let generation = self.nodes[to].generation;
            if let Some(t) = self.peers.send_close(i, to, self.now) {
                self.at(
                    t,
                    Event::PeerClosed {
                        from: i,
                        to,
                        generation,
                    },
                );
            }
        }
    }

    /// Whether `to` is still the incarnation a line was sent to.
    fn peer_is(&self, to: usize, generation: u32) -> bool {
        self.nodes[to].generation == generation && self.nodes[to].node.is_some()
    }

    pub(super) fn on_peer_line(
        &mut self,
        from: usize,
        to: usize,
        generation: u32,
        live_epoch: Option<u32>,
    ) {
        if !self.peer_is(to, generation) {
            return;
        }
        let status = PeerStatus {
            node: self.nodes[from].name.clone(),
            live_epoch,
        };
        let now = self.now;
        if let Some(w) = self.peers.watch(to) {
            w.heard(now, from, &status);
        }
        self.peer_outputs(to);
    }

    pub(super) fn on_peer_closed(&mut self, from: usize, to: usize, generation: u32) {
        if !self.peer_is(to, generation) {
            return;
        }
        if let Some(w) = self.peers.watch(to) {
            w.closed(from);
        }
        self.peer_outputs(to);
    }

    pub(super) fn on_peer_tick(&mut self, i: usize, generation: u32) {
        if !self.peer_is(i, generation) {
            return;
        }
        self.peers.tick_at[i] = None;
        let now = self.now;
        if let Some(w) = self.peers.watch(i) {
            w.tick(now);
        }
        self.peer_outputs(i);
    }

    /// Hands what node `i`'s watch concluded to the node, then schedules
    /// the watch's next tick (only when it comes earlier than the one
    /// already scheduled: a tick that finds nothing due schedules the next).
    fn peer_outputs(&mut self, i: usize) {
        while let Some(out) = self.peers.watch(i).and_then(|w| w.poll_output()) {
            match out {
                WatchOutput::Suspect {
                    node,
                    epoch,
                    reason,
                } => self.suspect(i, node, epoch, reason.to_string()),
                WatchOutput::PeerLive { node, epoch } => {
                    if self.cfg.planted_bug != Some(PlantedBug::Driver(DriverBug::IgnorePeerLive)) {
                        self.feed(i, Input::Lock(LockEvent::PeerLive { peer: node, epoch }));
                    }
                }
                WatchOutput::PeerNotLive { node } => {
                    self.feed(i, Input::Lock(LockEvent::PeerNotLive { peer: node }));
                }
            }
        }
        let Some(d) = self.peers.watch(i).and_then(|w| w.next_deadline()) else {
            return;
        };
        if self.peers.tick_at[i].is_none_or(|t| d < t) {
            self.peers.tick_at[i] = Some(d);
            let generation = self.nodes[i].generation;
            self.at(
                d,
                Event::PeerTick {
                    node: i,
                    generation,
                },
            );
        }
    }

    /// Node `i` suspects the live `peer` (heard at `epoch`): counted as
    /// false when that incarnation still runs.
    fn suspect(&mut self, i: usize, peer: String, epoch: u32, reason: String) {
        let still_runs = self
            .nodes
            .iter()
            .find(|h| h.name == peer)
            .and_then(|h| h.node.as_ref())
            .is_some_and(|n| n.epoch() == epoch);
        let stats = &mut self.peers.stats;
        stats.suspicions += 1;
        stats.false_suspicions += u64::from(still_runs);
        let before = stats.preemptions;
        let name = self.nodes[i].name.clone();
        self.log(
            &name,
            format!(
                "suspects {peer} (live at epoch {epoch}): {reason}{}",
                if still_runs { " [it still runs]" } else { "" }
            ),
        );
        self.feed(i, Input::Lock(LockEvent::Preempt { peer, reason }));
        if still_runs && self.peers.stats.preemptions > before {
            self.peers.stats.false_preemptions += 1;
        }
    }
}
