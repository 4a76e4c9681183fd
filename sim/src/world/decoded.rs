//! Journal records already decoded, shared by every node's journal driver.

use halyard_core::journal::{decode_entry, CodecError, Entry};

/// Journal records already decoded, by offset. A Kafka offset holds the
/// same record for ever (compaction removes records, never changes them)
/// and decoding is a pure function of its bytes, so every node's reload
/// after the first takes a copy of the entry instead of decoding again.
#[derive(Default)]
pub(super) struct DecodedRecords {
    by_offset: Vec<Option<Entry>>,
}

impl DecodedRecords {
    pub(super) fn get(
        &mut self,
        offset: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Entry, CodecError> {
        let i = usize::try_from(offset).expect("offsets fit in memory");
        if let Some(Some(e)) = self.by_offset.get(i) {
            return Ok(e.clone());
        }
        let e = decode_entry(key, value)?;
        if self.by_offset.len() <= i {
            self.by_offset.resize(i + 1, None);
        }
        self.by_offset[i] = Some(e.clone());
        Ok(e)
    }
}
