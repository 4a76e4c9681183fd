//! What opening, appending and compacting the local journal found and did.

/// What `open` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub batches: u64,
    pub entries: u64,
    /// Bytes kept, headers included.
    pub bytes: u64,
    /// Bytes of torn tail cut off the last segment.
    pub truncated_bytes: u64,
    /// Bytes cut off the last segment from a frame of zeros on: the unused
    /// end of a segment written full of zeros ahead of time, or a write a
    /// crash kept from the disk (the two look the same, and neither held
    /// anything acknowledged).
    pub zero_bytes_cut: u64,
    /// Segments deleted to finish a cleaning a crash interrupted.
    pub replaced_segments_deleted: usize,
}

/// Counters since `open` plus the current shape of the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub segments: usize,
    /// Bytes in all segments, headers included.
    pub bytes: u64,
    /// Keys whose latest entry is a put.
    pub live_entries: u64,
    /// Keys the compaction index tracks (live ones and tombstones on disk,
    /// plus `keys_to_forget`).
    pub tracked_keys: usize,
    /// Keys of removed segments the index has yet to drop
    /// (`LocalJournal::tidy_index`).
    pub keys_to_forget: usize,
    /// `fdatasync` calls on segment files since open.
    pub fsyncs: u64,
    /// `fsync` calls on the folder since open.
    pub dir_fsyncs: u64,
    pub batches_appended: u64,
    pub entries_appended: u64,
    /// Segments started from a zero-filled spare (see `spare`) rather than
    /// as an empty file.
    pub segments_preallocated: u64,
    /// Spares written over a dead segment's blocks rather than new ones.
    pub segments_recycled: u64,
    /// Dead segments deleted whole.
    pub segments_deleted: u64,
    /// Cleanings done (each rewrote a sealed prefix into one segment).
    pub cleanings: u64,
    /// Segments those cleanings rewrote.
    pub segments_cleaned: u64,
    /// Bytes compaction (deletion and cleaning) gave back since open.
    pub bytes_reclaimed: u64,
}

/// What one `compact` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Dead segments deleted whole.
    pub segments_deleted: usize,
    /// Segments of the sealed prefix rewritten into one by cleaning (0 when
    /// it did not clean).
    pub segments_cleaned: usize,
    /// Live entries the cleaning kept.
    pub entries_kept: u64,
    /// Bytes given back by deletion and cleaning together.
    pub bytes_reclaimed: u64,
    pub segments_remaining: usize,
}

impl CompactStats {
    /// Adds what another step did (`segments_remaining` is set by the caller).
    pub fn add(&mut self, other: &CompactStats) {
        self.segments_deleted += other.segments_deleted;
        self.segments_cleaned += other.segments_cleaned;
        self.entries_kept += other.entries_kept;
        self.bytes_reclaimed += other.bytes_reclaimed;
    }
}
