//! Faults: crashes and restarts, pauses, a node cut off from Kafka, a client
//! cut off from a node, Kafka losing replies, a node's disk filling up; and
//! healing them all.

use halyard_core::Millis;

use super::events::Event;
use super::state::World;

impl World {
    fn count_fault(&mut self, kind: &'static str) {
        *self.faults.by_kind.entry(kind).or_insert(0) += 1;
    }

    /// Strikes one fault, mostly at the live node, and schedules the next.
    pub(super) fn inject_fault(&mut self) {
        if self.now >= self.cfg.fault_until_ms {
            return;
        }
        let n = self.nodes.len();
        let target = match (self.live_node(), self.fault_rng.chance(0.6)) {
            (Some(l), true) => l,
            _ => self.fault_rng.range(0, n as u64 - 1) as usize,
        };
        let name = self.nodes[target].name.clone();
        // 70d8f86 drew from 0..=9; the disk-full slot (10) came later, and
        // the peer links' slots (11, 12) only with preemption, so seeds
        // without it draw as before.
        let kinds = if self.cfg.base_workload {
            9
        } else if self.cfg.preemption {
            12
        } else {
            10
        };
        match self.fault_rng.range(0, kinds) {
            0..=2 => {
                if self.nodes[target].node.is_some() {
                    self.count_fault("crash");
                    self.crash(target);
                    let t = self.now + self.fault_rng.range(500, 8_000);
                    self.at(t, Event::Restart { node: target });
                }
            }
            3..=4 => {
                let d = self.fault_rng.range(500, 10_000);
                self.count_fault("kafka-partition");
                self.network.kafka_cut.insert(target);
                self.log("fault", format!("partition {name} from Kafka for {d} ms"));
                self.at(self.now + d, Event::HealKafkaCut { node: target });
            }
            5..=6 => {
                if self.nodes[target].node.is_some() && self.nodes[target].paused_until.is_none() {
                    let d = self.fault_rng.range(500, 8_000);
                    self.count_fault("pause");
                    self.nodes[target].paused_until = Some(self.now + d);
                    self.log("fault", format!("pause {name} for {d} ms"));
                }
            }
            7 => {
                let c = self.fault_rng.range(0, self.clients.len() as u64 - 1) as usize;
                let d = self.fault_rng.range(200, 5_000);
                self.count_fault("client-partition");
                self.network.client_cut.insert((c, target));
                let client_name = self.clients[c].name.clone();
                self.log(
                    "fault",
                    format!("partition client {client_name} from {name} for {d} ms"),
                );
                for id in self.network.between(c, target) {
                    let t = self.now + 1;
                    self.at(t, Event::CloseToClient { connection: id });
                    self.at(t, Event::CloseToNode { connection: id });
                }
                self.at(
                    self.now + d,
                    Event::HealClientCut {
                        client: c,
                        node: target,
                    },
                );
            }
            10 if self.cfg.disk_faults => {
                if !self.nodes[target].disk_full {
                    self.count_fault("disk-full");
                    self.fill_disk(target);
                }
            }
            11 if self.cfg.preemption => self.cut_peers(target),
            12 if self.cfg.preemption => self.slow_peers(),
            _ => {
                let d = self.fault_rng.range(500, 5_000);
                self.count_fault("kafka-reply-loss");
                self.network.reply_loss = 0.3;
                self.log("fault", format!("Kafka loses 30% of replies for {d} ms"));
                self.at(self.now + d, Event::ReplyLossEnd);
            }
        }
        let t = self.now + self.fault_rng.range(500, 4_000);
        self.at(t, Event::Fault);
    }

    /// Cuts `target` off from one other node only: both still reach Kafka
    /// and the clients, so a backup that heard it live suspects it falsely.
    fn cut_peers(&mut self, target: usize) {
        let n = self.nodes.len() as u64;
        let other = (target + self.fault_rng.range(1, n - 1) as usize) % self.nodes.len();
        let d = self.fault_rng.range(500, 8_000);
        self.count_fault("peer-partition");
        self.peers.cut(target, other);
        let (a, b) = (&self.nodes[target].name, &self.nodes[other].name);
        let line = format!("partition {a} from {b} (peer links only) for {d} ms");
        self.log("fault", line);
        self.at(
            self.now + d,
            Event::HealPeerCut {
                a: target,
                b: other,
            },
        );
    }

    /// Delays every peer status line by an extra 200 to 1,500 ms for a
    /// while: the gap when it starts looks like silence.
    fn slow_peers(&mut self) {
        let extra = self.fault_rng.range(200, 1_500);
        let d = self.fault_rng.range(1_000, 8_000);
        self.count_fault("slow-peers");
        self.peers.slow_down(extra);
        self.log(
            "fault",
            format!("peer lines take {extra} ms more for {d} ms"),
        );
        self.at(self.now + d, Event::PeerSlowEnd);
    }

    /// Ends every fault: heal partitions and restart crashed nodes. The
    /// faults are over when the last pause ends too (a pause is not cut
    /// short): the liveness rule counts from then.
    pub(crate) fn heal(&mut self) {
        self.network.kafka_cut.clear();
        self.network.client_cut.clear();
        self.peers.heal();
        self.network.reply_loss = 0.0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                self.boot(i);
            }
        }
        let settle = self
            .nodes
            .iter()
            .filter_map(|h| h.paused_until)
            .fold(self.now, Millis::max);
        self.liveness.healed(settle);
        self.note_live_nodes();
        self.log("fault", "all faults healed");
    }
}
