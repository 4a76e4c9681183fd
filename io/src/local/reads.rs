//! Reading entries back by key (paging: a message body the broker dropped
//! from memory is read from its `MessageStored` entry when a consumer
//! reaches it). The compaction index knows where the latest entry of each
//! key is, so a read is one `pread` of its batch, mostly from the page
//! cache; entries of one batch are read together.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use super::error::LocalJournalError;
use super::journal::LocalJournal;
use super::liveness::Position;
use super::segment;

impl LocalJournal {
    /// The latest value of each key, in the order asked; `None` for a key
    /// whose latest entry is a tombstone or that the journal does not hold.
    /// Reads each batch involved once and opens each segment once.
    pub fn read_latest(&self, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, LocalJournalError> {
        self.check_poisoned()?;
        let mut out: Vec<Option<Bytes>> = vec![None; keys.len()];
        // (segment, batch offset) -> (entry index, slot in `out`).
        let mut wanted: BTreeMap<(u64, u64), Vec<(u32, usize)>> = BTreeMap::new();
        for (slot, key) in keys.iter().enumerate() {
            if let Some(Position {
                segment,
                offset,
                index,
            }) = self.liveness.latest_put(key)
            {
                wanted
                    .entry((segment, offset))
                    .or_default()
                    .push((index, slot));
            }
        }
        let mut open: Option<(u64, Arc<File>)> = None;
        for ((id, offset), slots) in wanted {
            if open.as_ref().is_none_or(|(o, _)| *o != id) {
                // A segment a running cleaning replaces is read through the
                // handle the cleaning holds: by name it may be gone already.
                let f = match self.pinned.get(&id) {
                    Some((f, _)) => f.clone(),
                    None => {
                        let p = segment::path(&self.config.dir, id);
                        Arc::new(File::open(&p).map_err(|e| LocalJournalError::io("open", &p, e))?)
                    }
                };
                open = Some((id, f));
            }
            let Some((_, file)) = open.as_ref() else {
                unreachable!("opened above");
            };
            let len = self.segment_bytes.get(&id).copied().unwrap_or(0);
            let entries = segment::read_batch(file, &self.config.dir, id, len, offset)?;
            for (index, slot) in slots {
                // The index and the file must agree on what is where.
                let entry = entries
                    .get(index as usize)
                    .filter(|e| e.key == keys[slot] && e.value.is_some())
                    .ok_or_else(|| LocalJournalError::IndexMismatch {
                        detail: format!(
                            "entry {index} of the batch at {} offset {offset} is not the latest entry of its key",
                            segment::file_name(id)
                        ),
                    })?;
                out[slot] = entry.value.clone();
            }
        }
        Ok(out)
    }
}
