//! The nodes' disks: a fault fills one above the nodes' `--max-disk-usage`
//! for a while; each node hears its disk's usage when it boots and when the
//! usage changes (the io driver reads it every second, and the node acts
//! only on changes), and the disk rule watches what it stores meanwhile.

use halyard_core::node::Input;

use super::events::Event;
use super::state::World;
use crate::disk_check::{FULL, ROOM};

impl World {
    /// Fills node `target`'s disk above the limit for a while.
    pub(super) fn fill_disk(&mut self, target: usize) {
        if self.nodes[target].disk_full {
            return;
        }
        let d = self.fault_rng.range(1_000, 8_000);
        let name = self.nodes[target].name.clone();
        self.log("fault", format!("fill {name}'s disk for {d} ms"));
        self.nodes[target].disk_full = true;
        self.at(self.now, Event::DiskReading { node: target });
        self.at(self.now + d, Event::DiskFreed { node: target });
    }

    pub(super) fn free_disk(&mut self, node: usize) {
        let name = self.nodes[node].name.clone();
        self.log("fault", format!("heal: {name}'s disk has room again"));
        self.nodes[node].disk_full = false;
        self.at(self.now, Event::DiskReading { node });
    }

    /// Tells node `i` (if up) how full its disk is now.
    pub(super) fn tell_disk(&mut self, i: usize) {
        if self.nodes[i].node.is_none() {
            return;
        }
        let usage = if self.nodes[i].disk_full { FULL } else { ROOM };
        // Before the node hears it: what it stores while handling the
        // reading that says there is room is not stored while full.
        self.disk.told(i, usage);
        self.feed(i, Input::Disk(usage));
    }
}
