//! What the file lock coordinator's files hold, as text an operator can
//! read with `cat`:
//!
//! - `<lock-id>.epoch`: the newest epoch, in decimal.
//! - `<lock-id>.state`:
//!
//!   ```text
//!   halyard-file-lock-state 1
//!   version 3
//!   epoch 7
//!   in-sync node-a node-b
//!   ```
//!
//!   `version` counts the writes (a write names the version it read);
//!   `epoch` is the writer's.

use std::collections::BTreeSet;

use halyard_core::coordinator::LockState;

const STATE_MAGIC: &str = "halyard-file-lock-state 1";
/// Longest file the coordinator reads back.
pub const FILE_BYTES_MAX: u64 = 64 * 1024;

pub fn encode_state(version: u64, state: &LockState) -> Vec<u8> {
    let mut out = format!(
        "{STATE_MAGIC}\nversion {version}\nepoch {}\nin-sync",
        state.epoch
    );
    for name in &state.in_sync {
        out.push(' ');
        out.push_str(name);
    }
    out.push('\n');
    out.into_bytes()
}

fn field<'a>(line: Option<&'a str>, name: &str) -> Result<&'a str, String> {
    line.and_then(|l| l.strip_prefix(name))
        .and_then(|l| l.strip_prefix(' ').or((l.is_empty()).then_some(l)))
        .ok_or_else(|| format!("no {name} line"))
}

/// `(version, state)`; a missing file is version 0 with no state.
pub fn decode_state(data: &[u8]) -> Result<(u64, LockState), String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(STATE_MAGIC) {
        return Err(format!("the first line is not {STATE_MAGIC:?}"));
    }
    let version = field(lines.next(), "version")?;
    let version = version
        .parse::<u64>()
        .map_err(|e| format!("version {version:?}: {e}"))?;
    let epoch = field(lines.next(), "epoch")?;
    let epoch = epoch
        .parse::<u64>()
        .map_err(|e| format!("epoch {epoch:?}: {e}"))?;
    let in_sync: BTreeSet<String> = field(lines.next(), "in-sync")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if lines.next().is_some() {
        return Err("more lines than version, epoch and in-sync".to_string());
    }
    if version == 0 {
        return Err("version 0 is never written".to_string());
    }
    Ok((version, LockState { epoch, in_sync }))
}

pub fn encode_epoch(epoch: u64) -> Vec<u8> {
    format!("{epoch}\n").into_bytes()
}

pub fn decode_epoch(data: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    text.trim()
        .parse::<u64>()
        .map_err(|e| format!("not an epoch: {e}"))
}

/// Node names and lock ids as every coordinator takes them.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn valid_lock_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_reads_as_text() {
        let s = LockState::new(7, ["node-a", "node-b"]);
        let bytes = encode_state(3, &s);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "halyard-file-lock-state 1\nversion 3\nepoch 7\nin-sync node-a node-b\n"
        );
        assert_eq!(decode_state(&bytes), Ok((3, s)));
        let empty = LockState::new(1, Vec::<String>::new());
        assert_eq!(decode_state(&encode_state(1, &empty)), Ok((1, empty)));
        for bad in [
            &b""[..],
            b"halyard-file-lock-state 2\nversion 1\nepoch 1\nin-sync\n",
            b"halyard-file-lock-state 1\nversion 0\nepoch 1\nin-sync\n",
            b"halyard-file-lock-state 1\nversion 1\nepoch x\nin-sync\n",
            b"halyard-file-lock-state 1\nversion 1\nepoch 1\nin-syncx\n",
            b"halyard-file-lock-state 1\nversion 1\nepoch 1\nin-sync\nmore\n",
        ] {
            assert!(decode_state(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_epoch(&encode_epoch(42)), Ok(42));
        assert!(decode_epoch(b"-1").is_err());
    }
}
