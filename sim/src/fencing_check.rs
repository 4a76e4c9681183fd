//! The fencing rules, from Kafka's log of commits and producer epochs
//! (kept by the model for the checker, independent of the model's own
//! epoch checks, so a model or driver that let a fenced writer through
//! shows up here):
//!
//! 1. **No write accepted from a fenced producer**: every committed
//!    transaction's producer epoch is the newest its producer id had when
//!    it committed. (The model refuses stale epochs; this is what would
//!    catch it if it did not.)
//! 2. **One writer at a time**: once a journal open that leads to a
//!    committed activation of epoch `e` has started (its
//!    `init_producer_id`), no transaction of an older epoch commits. The
//!    open's reading of the journal must see everything the older live
//!    wrote, and every receipt stands for a committed write (or a resend of
//!    one), so this is "at most one node receipting at a time" at the point
//!    where a receipt becomes true: the commit. (Checked at the moment a
//!    receipt is sent it would not hold: a live paused between Kafka's
//!    commit and reading the answer receipts after its successor
//!    activated, and rightly, the message being in the journal.) It is
//!    stronger than the split-brain rule, which starts at the newer
//!    activation's commit: it also covers the window while the newer live
//!    reads the journal, where a write it does not see would be lost.

use std::collections::BTreeMap;

use crate::kafka::{Commit, EpochBump};

/// The violations of both rules, at most `MAX_REPORTED` of each.
pub(crate) fn check(commits: &[Commit], bumps: &[EpochBump]) -> Vec<String> {
    let mut v = stale_producer_epochs(commits, bumps);
    v.extend(writes_after_a_newer_open(commits, bumps));
    v
}

const MAX_REPORTED: usize = 5;

/// Rule 1: commits by a producer epoch older than its id's newest.
fn stale_producer_epochs(commits: &[Commit], bumps: &[EpochBump]) -> Vec<String> {
    let mut v = Vec::new();
    let mut newest: BTreeMap<u64, u16> = BTreeMap::new();
    let mut bumps = bumps.iter().peekable();
    for (k, c) in commits.iter().enumerate() {
        while let Some(b) = bumps.next_if(|b| b.commits_before <= k) {
            newest.insert(b.producer_id, b.epoch);
        }
        let current = newest.get(&c.producer_id).copied();
        if current.is_some_and(|e| c.producer_epoch < e) && v.len() < MAX_REPORTED {
            v.push(format!(
                "fenced producer's write accepted: {} (epoch {}) committed with producer {} epoch {} after epoch {} was opened",
                c.writer.node,
                c.writer.epoch,
                c.producer_id,
                c.producer_epoch,
                current.unwrap_or_default()
            ));
        }
    }
    v
}

/// Rule 2: commits of an older node epoch after the open of a newer one.
fn writes_after_a_newer_open(commits: &[Commit], bumps: &[EpochBump]) -> Vec<String> {
    // Where each open (a producer epoch given by `init_producer_id`) sits
    // among the commits.
    let opened_at: BTreeMap<(u64, u16), usize> = bumps
        .iter()
        .filter(|b| b.by_open)
        .map(|b| ((b.producer_id, b.epoch), b.commits_before))
        .collect();
    // The open behind each node epoch's first commit (its activation).
    let mut open_of: BTreeMap<u32, (usize, &str)> = BTreeMap::new();
    for c in commits {
        if open_of.contains_key(&c.writer.epoch) {
            continue;
        }
        if let Some(&at) = opened_at.get(&(c.producer_id, c.producer_epoch)) {
            open_of.insert(c.writer.epoch, (at, c.writer.node.as_str()));
        }
    }
    // The epochs in order, and from each position the earliest open of
    // that epoch or any newer one: an epoch is fenced from the earliest
    // open of the epochs above it.
    let epochs: Vec<(u32, usize, &str)> = open_of.iter().map(|(&e, &(at, n))| (e, at, n)).collect();
    let mut earliest_from: Vec<Option<(usize, u32, &str)>> = vec![None; epochs.len() + 1];
    for (i, &(e, at, node)) in epochs.iter().enumerate().rev() {
        earliest_from[i] = match earliest_from[i + 1] {
            Some(f) if f.0 <= at => Some(f),
            _ => Some((at, e, node)),
        };
    }
    let mut v = Vec::new();
    for (k, c) in commits.iter().enumerate() {
        let above = epochs.partition_point(|&(e, _, _)| e <= c.writer.epoch);
        if let Some((at, newer, node)) = earliest_from[above] {
            if k >= at && v.len() < MAX_REPORTED {
                v.push(format!(
                    "two writers: {} committed a write with epoch {} after {} opened the journal for epoch {} (which fences it)",
                    c.writer.node, c.writer.epoch, node, newer
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Writer;

    fn commit(node: &str, epoch: u32, producer_epoch: u16) -> Commit {
        Commit {
            writer: Writer {
                node: node.into(),
                epoch,
            },
            producer_id: 1000,
            producer_epoch,
        }
    }

    fn open(commits_before: usize, epoch: u16) -> EpochBump {
        EpochBump {
            commits_before,
            producer_id: 1000,
            epoch,
            by_open: true,
        }
    }

    #[test]
    fn a_clean_handover_passes() {
        // n1 opens (producer epoch 0), writes epoch 1; n2 opens (1) after
        // two commits and writes epoch 2.
        let commits = [commit("n1", 1, 0), commit("n1", 1, 0), commit("n2", 2, 1)];
        let bumps = [open(0, 0), open(2, 1)];
        assert!(check(&commits, &bumps).is_empty());
    }

    #[test]
    fn a_stale_producer_epoch_is_caught() {
        let commits = [commit("n1", 1, 0), commit("n2", 2, 1), commit("n1", 1, 0)];
        let bumps = [open(0, 0), open(1, 1)];
        let v = check(&commits, &bumps);
        assert!(
            v.iter()
                .any(|s| s.contains("fenced producer's write accepted")),
            "{v:?}"
        );
        assert!(v.iter().any(|s| s.contains("two writers")), "{v:?}");
    }

    #[test]
    fn a_write_while_the_next_live_reads_is_caught() {
        // n2 opens with its own producer (no fencing) after n1's first
        // commit; n1 commits again before n2's activation.
        let mut late = commit("n2", 2, 0);
        late.producer_id = 2000;
        let commits = [commit("n1", 1, 0), commit("n1", 1, 0), late];
        let bumps = [
            open(0, 0),
            EpochBump {
                commits_before: 1,
                producer_id: 2000,
                epoch: 0,
                by_open: true,
            },
        ];
        let v = check(&commits, &bumps);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("n1 committed a write with epoch 1 after n2 opened"),
            "{v:?}"
        );
    }
}
