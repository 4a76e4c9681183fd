//! Segment files: their names, listing them, creating them and scanning them.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::LocalJournalError;
use super::format::{self, Corruption, BATCH_FRAME_BYTES, SEGMENT_HEADER_BYTES};
use super::Entry;

/// Digits in a segment file name: enough for any u64, and zero padding makes
/// the lexical order of names the numeric order of ids.
const NAME_DIGITS: usize = 20;
const SUFFIX: &str = ".seg";
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

/// Ids of the segment files in `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<u64>, LocalJournalError> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| LocalJournalError::io("list", dir, e))?;
    let mut ids = Vec::new();
    for (n, item) in read_dir.enumerate() {
        if n >= DIR_ENTRIES_MAX {
            return Err(LocalJournalError::InvalidConfig(format!(
                "{} holds more than {DIR_ENTRIES_MAX} files",
                dir.display()
            )));
        }
        let item = item.map_err(|e| LocalJournalError::io("list", dir, e))?;
        match item.file_name().to_str().and_then(parse_file_name) {
            Some(id) => ids.push(id),
            None => {
                tracing::debug!(file = ?item.file_name(), "ignoring non-segment file in journal folder")
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
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
    file.write_all_at(&format::encode_header(id), 0)
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
    /// The first invalid thing and its offset; `None` if all of it is valid.
    pub stop: Option<(u64, Corruption)>,
}

/// Reads segment `id` from the start, verifying the header and every batch,
/// and hands each good batch to `on_batch` in order. Stops at the first
/// invalid header or batch and reports it; the caller decides whether that is
/// a torn tail or corruption. Reads at most `limit` bytes if given.
pub fn scan(
    dir: &Path,
    id: u64,
    limit: Option<u64>,
    on_batch: &mut dyn FnMut(Vec<Entry>),
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
        stop: None,
    };

    let header_len = file_bytes.min(SEGMENT_HEADER_BYTES) as usize;
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    reader
        .read_exact(&mut header[..header_len])
        .map_err(io("read header of"))?;
    if let Err(c) = format::check_header(&header[..header_len], id) {
        scan.stop = Some((0, c));
        return Ok(scan);
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    scan.valid_bytes = offset;

    while offset < file_bytes {
        let available = file_bytes - offset;
        if available < BATCH_FRAME_BYTES {
            scan.stop = Some((offset, Corruption::FrameShort { available }));
            break;
        }
        let mut frame = [0u8; BATCH_FRAME_BYTES as usize];
        reader.read_exact(&mut frame).map_err(io("read"))?;
        let (len, crc) = match format::check_frame(&frame, available - BATCH_FRAME_BYTES) {
            Ok(v) => v,
            Err(c) => {
                scan.stop = Some((offset, c));
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
                on_batch(entries);
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
}
