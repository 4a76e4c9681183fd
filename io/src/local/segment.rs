//! Segment files: their names, listing them, creating them and scanning them.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::entry::Entry;
use super::error::LocalJournalError;
use super::format::{self, Corruption, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES};

/// Digits in a segment file name: enough for any u64, and zero padding makes
/// the lexical order of names the numeric order of ids.
const NAME_DIGITS: usize = 20;
const SUFFIX: &str = ".seg";
/// Suffix of the file a cleaning writes before renaming it over the first
/// segment of the prefix it cleans: `00000000000000000001.seg.cleaning`.
const CLEANING_SUFFIX: &str = ".cleaning";
/// Read buffer for scans: large enough for sequential throughput, small
/// enough not to matter.
const SCAN_BUFFER_BYTES: usize = 256 * 1024;
/// Files in the journal folder we are willing to look at; a bound on `open`.
const DIR_ENTRIES_MAX: usize = 1 << 20;

/// `00000000000000000001.seg` for id 1.
pub fn file_name(id: u64) -> String {
    format!("{id:0NAME_DIGITS$}{SUFFIX}")
}

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(file_name(id))
}

/// The id in a segment file name, or `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a cleaning that keeps id `id` writes the cleaned segment.
pub fn cleaning_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{}{CLEANING_SUFFIX}", file_name(id)))
}

/// Whether `name` is a file a cleaning left behind (`<segment name>.cleaning`).
fn is_cleaning_leftover(name: &str) -> bool {
    name.strip_suffix(CLEANING_SUFFIX)
        .and_then(parse_file_name)
        .is_some()
}

/// What a journal folder holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Segment ids, oldest first.
    pub ids: Vec<u64>,
    /// Unfinished cleaning outputs, which a crash before their rename leaves.
    pub cleaning_leftovers: Vec<PathBuf>,
}

/// The segment files in `dir`, oldest first, and leftover cleaning files.
/// Other files are ignored.
pub fn list(dir: &Path) -> Result<Listing, LocalJournalError> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| LocalJournalError::io("list", dir, e))?;
    let mut listing = Listing::default();
    for (n, item) in read_dir.enumerate() {
        if n >= DIR_ENTRIES_MAX {
            return Err(LocalJournalError::InvalidConfig(format!(
                "{} holds more than {DIR_ENTRIES_MAX} files",
                dir.display()
            )));
        }
        let item = item.map_err(|e| LocalJournalError::io("list", dir, e))?;
        let name = item.file_name();
        let name = name.to_str();
        match name.and_then(parse_file_name) {
            Some(id) => listing.ids.push(id),
            None if name.is_some_and(is_cleaning_leftover) => {
                listing.cleaning_leftovers.push(item.path())
            }
            None => {
                tracing::debug!(file = ?item.file_name(), "ignoring non-segment file in journal folder")
            }
        }
    }
    listing.ids.sort_unstable();
    Ok(listing)
}

/// Creates segment `id` with its header written (not synced). Fails if the
/// file exists: ids are never reused.
pub fn create(dir: &Path, id: u64) -> Result<File, LocalJournalError> {
    let p = path(dir, id);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| LocalJournalError::io("create", &p, e))?;
    file.write_all_at(&format::encode_header(id, 0), 0)
        .map_err(|e| LocalJournalError::io("write header of", &p, e))?;
    Ok(file)
}

/// Makes the zero-filled file at `spare` segment `id`: renames it into place
/// and writes the header (not synced). Fails if the segment exists.
pub fn adopt(dir: &Path, id: u64, spare: &Path) -> Result<File, LocalJournalError> {
    let p = path(dir, id);
    if p.exists() {
        return Err(LocalJournalError::io(
            "rename a spare to",
            &p,
            std::io::Error::from(ErrorKind::AlreadyExists),
        ));
    }
    std::fs::rename(spare, &p).map_err(|e| LocalJournalError::io("rename a spare to", &p, e))?;
    let file = open_for_append(dir, id)?;
    file.write_all_at(&format::encode_header(id, 0), 0)
        .map_err(|e| LocalJournalError::io("write header of", &p, e))?;
    Ok(file)
}

/// Opens an existing segment for appending at offsets we track ourselves.
pub fn open_for_append(dir: &Path, id: u64) -> Result<File, LocalJournalError> {
    let p = path(dir, id);
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| LocalJournalError::io("open", &p, e))
}

pub fn sync_dir(dir: &Path) -> Result<(), LocalJournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LocalJournalError::io("fsync folder", dir, e))
}

/// What a scan of one segment found.
#[derive(Debug)]
pub struct Scan {
    /// Bytes scanned: the file length, or the limit if smaller.
    pub file_bytes: u64,
    /// Length of the valid prefix: header plus every good batch before `stop`.
    pub valid_bytes: u64,
    pub batches: u64,
    pub entries: u64,
    /// The header's `replaces` field (0 unless a cleaning wrote the segment).
    pub replaces: u32,
    /// The first invalid thing and its offset; `None` if all of it is valid.
    pub stop: Option<(u64, Corruption)>,
    /// The stop is a batch frame of zeros: where a zero-filled segment's
    /// unused space begins (or a crash lost the frame's write).
    pub stop_at_zeros: bool,
}

/// Reads segment `id` from the start, verifying the header and every batch,
/// and hands each good batch to `on_batch` in order, with the offset of its
/// frame. Stops at the first invalid header or batch and reports it; the
/// caller decides whether that is a torn tail or corruption. Reads at most
/// `limit` bytes if given.
pub fn scan(
    dir: &Path,
    id: u64,
    limit: Option<u64>,
    on_batch: &mut dyn FnMut(u64, Vec<Entry>),
) -> Result<Scan, LocalJournalError> {
    let p = path(dir, id);
    let p = p.as_path();
    let io = |op| move |e| LocalJournalError::io(op, p, e);
    let file = File::open(p).map_err(io("open"))?;
    let on_disk = file.metadata().map_err(io("stat"))?.len();
    let file_bytes = limit.map_or(on_disk, |l| l.min(on_disk));
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, file.take(file_bytes));
    let mut scan = Scan {
        file_bytes,
        valid_bytes: 0,
        batches: 0,
        entries: 0,
        replaces: 0,
        stop: None,
        stop_at_zeros: false,
    };

    let header_len = file_bytes.min(SEGMENT_HEADER_BYTES) as usize;
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    reader
        .read_exact(&mut header[..header_len])
        .map_err(io("read header of"))?;
    match format::check_header(&header[..header_len], id) {
        Ok(replaces) => scan.replaces = replaces,
        Err(c) => {
            scan.stop = Some((0, c));
            return Ok(scan);
        }
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    scan.valid_bytes = offset;

    while offset < file_bytes {
        let available = file_bytes - offset;
        if available < BATCH_FRAME_BYTES {
            let mut rest = [0u8; BATCH_FRAME_BYTES as usize];
            let rest = &mut rest[..available as usize];
            reader.read_exact(rest).map_err(io("read"))?;
            scan.stop = Some((offset, Corruption::FrameShort { available }));
            scan.stop_at_zeros = rest.iter().all(|b| *b == 0);
            break;
        }
        let mut frame = [0u8; BATCH_FRAME_BYTES as usize];
        reader.read_exact(&mut frame).map_err(io("read"))?;
        let (len, crc) = match format::check_frame(&frame, available - BATCH_FRAME_BYTES) {
            Ok(v) => v,
            Err(c) => {
                scan.stop = Some((offset, c));
                scan.stop_at_zeros = frame.iter().all(|b| *b == 0);
                break;
            }
        };
        // `len` is bounded by BATCH_PAYLOAD_BYTES_MAX and by the file's size.
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).map_err(|e| {
            // EOF here means the file shrank under us: someone else is
            // touching it.
            let op = if e.kind() == ErrorKind::UnexpectedEof {
                "read (file shrank during scan)"
            } else {
                "read"
            };
            LocalJournalError::io(op, p, e)
        })?;
        match format::decode_payload(Bytes::from(payload), crc) {
            Ok(entries) => {
                scan.batches += 1;
                scan.entries += entries.len() as u64;
                on_batch(offset, entries);
                offset += BATCH_FRAME_BYTES + len as u64;
                scan.valid_bytes = offset;
            }
            Err(c) => {
                scan.stop = Some((offset, c));
                break;
            }
        }
    }
    Ok(scan)
}

/// Reads the first `len` bytes of segment `id`, which must all be valid
/// (recovery already cut any torn tail, so damage now is corruption), and
/// hands each batch to `on_batch` in order.
pub fn scan_verified(
    dir: &Path,
    id: u64,
    len: u64,
    on_batch: &mut dyn FnMut(u64, Vec<Entry>),
) -> Result<(), LocalJournalError> {
    let scan = scan(dir, id, Some(len), on_batch)?;
    if let Some((offset, problem)) = scan.stop {
        let file = file_name(id);
        return Err(if offset == 0 {
            LocalJournalError::BadSegmentHeader { file, problem }
        } else {
            LocalJournalError::CorruptBatch {
                file,
                offset,
                problem,
            }
        });
    }
    if scan.valid_bytes != len {
        return Err(LocalJournalError::CorruptBatch {
            file: file_name(id),
            offset: scan.valid_bytes,
            problem: Corruption::FrameShort { available: 0 },
        });
    }
    Ok(())
}

/// Reads and verifies the one batch whose frame starts at `offset` in
/// segment `id` (open as `file`, `len` valid bytes long). Any problem is
/// corruption: the offset came from a scan or an append that succeeded.
pub fn read_batch(
    file: &File,
    dir: &Path,
    id: u64,
    len: u64,
    offset: u64,
) -> Result<Vec<Entry>, LocalJournalError> {
    let corrupt = |problem| LocalJournalError::CorruptBatch {
        file: file_name(id),
        offset,
        problem,
    };
    let available = len.saturating_sub(offset);
    if offset < SEGMENT_HEADER_BYTES || available < BATCH_FRAME_BYTES {
        return Err(corrupt(Corruption::FrameShort { available }));
    }
    let p = path(dir, id);
    let mut frame = [0u8; BATCH_FRAME_BYTES as usize];
    file.read_exact_at(&mut frame, offset)
        .map_err(|e| LocalJournalError::io("read", &p, e))?;
    let (payload_len, crc) =
        format::check_frame(&frame, available - BATCH_FRAME_BYTES).map_err(corrupt)?;
    // Bounded by BATCH_PAYLOAD_BYTES_MAX and by the segment's length.
    let mut payload = vec![0u8; payload_len];
    file.read_exact_at(&mut payload, offset + BATCH_FRAME_BYTES)
        .map_err(|e| LocalJournalError::io("read", &p, e))?;
    format::decode_payload(Bytes::from(payload), crc).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_ids_and_parse_back() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("1.seg"), None);
        assert_eq!(parse_file_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_file_name("00000000000000000001.seg.tmp"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn cleaning_leftovers_are_recognised_and_nothing_else() {
        let dir = Path::new("/j");
        let p = cleaning_path(dir, 3);
        assert_eq!(p, Path::new("/j/00000000000000000003.seg.cleaning"));
        let name = p.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(is_cleaning_leftover(name));
        assert_eq!(parse_file_name(name), None, "never taken for a segment");
        assert!(!is_cleaning_leftover("3.seg.cleaning"));
        assert!(!is_cleaning_leftover("00000000000000000003.seg"));
        assert!(!is_cleaning_leftover("notes.cleaning"));
    }
}
