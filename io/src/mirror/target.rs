//! The target side's journal: while this broker is passive, the mirror
//! stream's groups are appended to its own local journal (the one the
//! node opens when it goes active), and a snapshot replaces it whole.
//!
//! `DATA_DIR/mirror.position` says which stream position the journal
//! holds ("EPOCH SEQ"). It is written after the group it names is durable,
//! and not synced: after a crash it may name an older group (the source
//! resends from there; groups reapplied in order leave the same journal)
//! or be unreadable (a snapshot follows), never a newer one.

use std::fs;
use std::path::{Path, PathBuf};

use halyard_core::journal::group_commit::EncodedEntry;
use halyard_core::mirror::{Position, TargetAction};
use tracing::{info, warn};

use crate::local::{Entry, LocalJournal, LocalJournalConfig};

const POSITION_FILE: &str = "mirror.position";
const SNAPSHOT_DIR: &str = "journal.snapshot";
const OLD_DIR: &str = "journal.old";

pub(crate) struct TargetJournal {
    config: LocalJournalConfig,
    data_dir: PathBuf,
    journal: Option<LocalJournal>,
    snapshot: Option<LocalJournal>,
    /// This broker is active: the node owns the journal.
    pub(crate) active: bool,
}

fn raw(batches: Vec<Vec<EncodedEntry>>) -> Vec<Vec<Entry>> {
    batches
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .map(|e| Entry {
                    key: e.key,
                    value: e.value,
                })
                .collect()
        })
        .collect()
}

impl TargetJournal {
    /// Finishes or undoes a snapshot swap a crash interrupted.
    pub(crate) fn new(config: LocalJournalConfig) -> TargetJournal {
        let data_dir = config
            .dir
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let old = data_dir.join(OLD_DIR);
        if old.exists() {
            if config.dir.exists() {
                let _ = fs::remove_dir_all(&old);
            } else {
                warn!("a snapshot swap was interrupted: keeping the journal from before it");
                let _ = fs::rename(&old, &config.dir);
            }
        }
        let _ = fs::remove_dir_all(data_dir.join(SNAPSHOT_DIR));
        TargetJournal {
            config,
            data_dir,
            journal: None,
            snapshot: None,
            active: false,
        }
    }

    fn position_path(&self) -> PathBuf {
        self.data_dir.join(POSITION_FILE)
    }

    /// The stream position the journal holds, if known.
    pub(crate) fn position(&self) -> Option<Position> {
        let text = fs::read_to_string(self.position_path()).ok()?;
        let mut words = text.split_whitespace();
        let epoch = words.next()?.parse().ok()?;
        let seq = words.next()?.parse().ok()?;
        Some(Position { epoch, seq })
    }

    fn set_position(&self, p: Option<Position>) -> Result<(), String> {
        let path = self.position_path();
        match p {
            None => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("removing {}: {e}", path.display())),
            },
            Some(p) => {
                let tmp = self.data_dir.join("mirror.position.tmp");
                fs::write(&tmp, format!("{} {}\n", p.epoch, p.seq))
                    .and_then(|()| fs::rename(&tmp, &path))
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            }
        }
    }

    /// Opens the journal for the stream (it is this broker's own: the
    /// node has it only while active).
    pub(crate) fn ensure_open(&mut self) -> Result<(), String> {
        if self.active {
            return Err("this broker is active".into());
        }
        if self.journal.is_none() {
            let (j, rec) = LocalJournal::open(self.config.clone()).map_err(|e| e.to_string())?;
            info!(
                entries = rec.entries,
                "journal opened to take the mirror stream"
            );
            self.journal = Some(j);
        }
        Ok(())
    }

    /// Carries out one action of the link, durably.
    pub(crate) fn apply(&mut self, action: TargetAction) -> Result<(), String> {
        if self.active {
            return Err("this broker went active".into());
        }
        match action {
            TargetAction::Append {
                batches, position, ..
            } => {
                self.ensure_open()?;
                let j = self.journal.as_mut().ok_or("no journal")?;
                j.append(&raw(batches)).map_err(|e| e.to_string())?;
                self.set_position(Some(position))
            }
            TargetAction::SnapshotBegin => {
                info!("receiving a snapshot of the active broker's journal");
                self.set_position(None)?;
                let dir = self.data_dir.join(SNAPSHOT_DIR);
                self.snapshot = None;
                let _ = fs::remove_dir_all(&dir);
                let mut config = self.config.clone();
                config.dir = dir;
                let (j, _) = LocalJournal::open(config).map_err(|e| e.to_string())?;
                self.snapshot = Some(j);
                Ok(())
            }
            TargetAction::SnapshotChunk { batches, .. } => {
                let j = self
                    .snapshot
                    .as_mut()
                    .ok_or("a snapshot chunk outside a snapshot")?;
                j.append(&raw(batches)).map_err(|e| e.to_string())
            }
            TargetAction::SnapshotEnd { position, .. } => {
                if self.snapshot.take().is_none() {
                    return Err("a snapshot end outside a snapshot".into());
                }
                self.journal = None;
                let old = self.data_dir.join(OLD_DIR);
                let dir = &self.config.dir;
                if dir.exists() {
                    fs::rename(dir, &old).map_err(|e| format!("moving the journal aside: {e}"))?;
                }
                fs::rename(self.data_dir.join(SNAPSHOT_DIR), dir)
                    .map_err(|e| format!("moving the snapshot in: {e}"))?;
                if let Ok(d) = fs::File::open(&self.data_dir) {
                    let _ = d.sync_all();
                }
                let _ = fs::remove_dir_all(&old);
                self.set_position(Some(position))?;
                info!(
                    epoch = position.epoch,
                    seq = position.seq,
                    "snapshot in place: the journal holds the active broker's"
                );
                self.ensure_open()
            }
        }
    }

    /// Carries out `actions` in order, durably, with one append (and one
    /// sync) for each run of consecutive groups: a passive that took one
    /// sync per group could not keep up with an active whose groups are
    /// small (steady load).
    pub(crate) fn apply_all(&mut self, actions: Vec<TargetAction>) -> Result<(), String> {
        let mut run: Vec<Vec<EncodedEntry>> = Vec::new();
        let mut last: Option<Position> = None;
        for action in actions {
            match action {
                TargetAction::Append {
                    batches, position, ..
                } => {
                    run.extend(batches);
                    last = Some(position);
                }
                other => {
                    self.append_run(&mut run, last.take())?;
                    self.apply(other)?;
                }
            }
        }
        self.append_run(&mut run, last)
    }

    fn append_run(
        &mut self,
        run: &mut Vec<Vec<EncodedEntry>>,
        position: Option<Position>,
    ) -> Result<(), String> {
        let Some(position) = position else {
            return Ok(());
        };
        self.apply(TargetAction::Append {
            delivery: 0,
            batches: std::mem::take(run),
            position,
        })
    }

    /// The node is about to go active: it owns the journal from now on,
    /// and its own writes leave the stream (no position any more).
    pub(crate) fn give_up(&mut self) {
        self.active = true;
        self.journal = None;
        self.snapshot = None;
        if let Err(e) = self.set_position(None) {
            warn!(error = %e, "could not remove the mirror position");
        }
        let _ = fs::remove_dir_all(self.data_dir.join(SNAPSHOT_DIR));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::local::peek_journal;

    fn entry(k: &str, v: &str) -> Vec<EncodedEntry> {
        vec![EncodedEntry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
        }]
    }

    fn keys(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        peek_journal(dir, |b| {
            out.extend(
                b.iter()
                    .map(|e| String::from_utf8_lossy(&e.key).into_owned()),
            )
        })
        .unwrap();
        out
    }

    fn config(data: &Path) -> LocalJournalConfig {
        let mut c = LocalJournalConfig::new(data.join("journal"));
        c.fsync = false;
        c
    }

    #[test]
    fn groups_then_a_snapshot_replace_the_journal_and_the_position_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let mut t = TargetJournal::new(config(tmp.path()));
        assert_eq!(t.position(), None);
        let p1 = Position { epoch: 3, seq: 1 };
        t.apply(TargetAction::Append {
            delivery: 0,
            batches: vec![entry("old", "1")],
            position: p1,
        })
        .unwrap();
        assert_eq!(t.position(), Some(p1));
        t.apply(TargetAction::SnapshotBegin).unwrap();
        assert_eq!(
            t.position(),
            None,
            "no position while a snapshot is half there"
        );
        t.apply(TargetAction::SnapshotChunk {
            delivery: 1,
            batches: vec![entry("new", "2")],
        })
        .unwrap();
        let p2 = Position { epoch: 4, seq: 9 };
        t.apply(TargetAction::SnapshotEnd {
            delivery: 2,
            position: p2,
        })
        .unwrap();
        assert_eq!(t.position(), Some(p2));
        // Reopened for the stream after the swap: only the snapshot's entries.
        t.journal = None;
        assert_eq!(keys(&tmp.path().join("journal")), ["new"]);
        assert!(!tmp.path().join(SNAPSHOT_DIR).exists());
        assert!(!tmp.path().join(OLD_DIR).exists());
    }

    #[test]
    fn a_run_of_groups_goes_in_as_one_append_and_the_position_is_the_last() {
        let tmp = tempfile::tempdir().unwrap();
        let mut t = TargetJournal::new(config(tmp.path()));
        let at = |seq| Position { epoch: 2, seq };
        let append = |delivery, k: &str, seq| TargetAction::Append {
            delivery,
            batches: vec![entry(k, "v")],
            position: at(seq),
        };
        t.apply_all(vec![
            append(0, "a", 1),
            append(1, "b", 2),
            TargetAction::SnapshotBegin,
            TargetAction::SnapshotChunk {
                delivery: 2,
                batches: vec![entry("s", "1")],
            },
            TargetAction::SnapshotEnd {
                delivery: 3,
                position: at(7),
            },
            append(4, "c", 8),
            append(5, "d", 9),
        ])
        .unwrap();
        assert_eq!(t.position(), Some(at(9)));
        t.journal = None;
        assert_eq!(keys(&tmp.path().join("journal")), ["s", "c", "d"]);
    }

    #[test]
    fn an_interrupted_swap_is_undone_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut t = TargetJournal::new(config(tmp.path()));
            t.apply(TargetAction::Append {
                delivery: 0,
                batches: vec![entry("kept", "1")],
                position: Position { epoch: 1, seq: 1 },
            })
            .unwrap();
        }
        // A crash between moving the journal aside and moving the snapshot in.
        fs::rename(tmp.path().join("journal"), tmp.path().join(OLD_DIR)).unwrap();
        fs::create_dir_all(tmp.path().join(SNAPSHOT_DIR)).unwrap();
        let _t = TargetJournal::new(config(tmp.path()));
        assert_eq!(keys(&tmp.path().join("journal")), ["kept"]);
        assert!(!tmp.path().join(SNAPSHOT_DIR).exists());
    }

    #[test]
    fn an_active_broker_gives_the_journal_and_its_position_up() {
        let tmp = tempfile::tempdir().unwrap();
        let mut t = TargetJournal::new(config(tmp.path()));
        t.apply(TargetAction::Append {
            delivery: 0,
            batches: vec![entry("a", "1")],
            position: Position { epoch: 1, seq: 1 },
        })
        .unwrap();
        t.give_up();
        assert_eq!(t.position(), None, "its own writes leave the stream");
        assert!(t.ensure_open().is_err());
        // The node can open the journal now.
        let (_j, rec) = LocalJournal::open(config(tmp.path())).unwrap();
        assert_eq!(rec.entries, 1);
    }
}
