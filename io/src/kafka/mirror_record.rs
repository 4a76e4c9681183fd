//! The record of the Kafka mirror lock's state topic: the newest epoch and
//! the lock state (the active's epoch and in-sync set), as text so that an
//! operator can read it with a console consumer:
//!
//! ```text
//! halyard-kafka-mirror-lock 1
//! epoch 8
//! state-epoch 7
//! in-sync server0 server1
//! ```
//!
//! `state-epoch` and `in-sync` are absent until a holder first wrote the
//! state. Every record has the key [`RECORD_KEY`], so compaction keeps the
//! last one.

use std::collections::BTreeSet;

use halyard_core::coordinator::LockState;

/// First line of a record: the format and its version.
const MAGIC: &str = "halyard-kafka-mirror-lock 1";
/// The key of every record of the state topic.
pub(crate) const RECORD_KEY: &[u8] = b"lock";
/// Most names in an in-sync set a record may hold (the coordinator keeps at
/// most 16 peers and itself).
const IN_SYNC_MAX: usize = 64;

/// One record: the newest epoch, and the state if one was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockRecord {
    /// The epoch of the newest acquisition.
    pub(crate) epoch: u64,
    pub(crate) state: Option<LockState>,
}

pub(crate) fn encode(r: &LockRecord) -> Vec<u8> {
    let mut out = format!("{MAGIC}\nepoch {}\n", r.epoch);
    if let Some(s) = &r.state {
        out.push_str(&format!("state-epoch {}\nin-sync", s.epoch));
        for name in &s.in_sync {
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn number(line: Option<&str>, name: &str) -> Result<u64, String> {
    let line = line.ok_or_else(|| format!("no {name} line"))?;
    let value = line
        .strip_prefix(name)
        .and_then(|v| v.strip_prefix(' '))
        .ok_or_else(|| format!("{line:?} is not a {name} line"))?;
    value
        .parse()
        .map_err(|_| format!("{name} {value:?} is not a number"))
}

/// Decodes a record's value; every refusal says what is wrong.
pub(crate) fn decode(data: &[u8]) -> Result<LockRecord, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("the first line is not {MAGIC:?}"));
    }
    let epoch = number(lines.next(), "epoch")?;
    let state = match lines.next() {
        None => None,
        Some(line) => {
            let state_epoch = number(Some(line), "state-epoch")?;
            let names = lines
                .next()
                .and_then(|l| l.strip_prefix("in-sync"))
                .ok_or("no in-sync line after state-epoch")?;
            let in_sync: BTreeSet<String> = names.split_whitespace().map(String::from).collect();
            if in_sync.len() > IN_SYNC_MAX {
                return Err(format!(
                    "{} names in sync, at most {IN_SYNC_MAX}",
                    in_sync.len()
                ));
            }
            if state_epoch > epoch {
                return Err(format!(
                    "state epoch {state_epoch} is newer than the lock's epoch {epoch}"
                ));
            }
            Some(LockState {
                epoch: state_epoch,
                in_sync,
            })
        }
    };
    if let Some(extra) = lines.next() {
        return Err(format!("unexpected line {extra:?}"));
    }
    Ok(LockRecord { epoch, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_back_and_read_as_text() {
        let none = LockRecord {
            epoch: 1,
            state: None,
        };
        assert_eq!(encode(&none), b"halyard-kafka-mirror-lock 1\nepoch 1\n");
        assert_eq!(decode(&encode(&none)), Ok(none));
        let some = LockRecord {
            epoch: 8,
            state: Some(LockState::new(7, ["server0", "server1"])),
        };
        assert_eq!(
            String::from_utf8(encode(&some)).unwrap(),
            "halyard-kafka-mirror-lock 1\nepoch 8\nstate-epoch 7\nin-sync server0 server1\n"
        );
        assert_eq!(decode(&encode(&some)), Ok(some));
        let empty_set = LockRecord {
            epoch: 3,
            state: Some(LockState::new(3, Vec::<String>::new())),
        };
        assert_eq!(decode(&encode(&empty_set)), Ok(empty_set));
    }

    #[test]
    fn what_this_code_did_not_write_is_refused() {
        for (bad, says) in [
            (&b"\xff"[..], "not UTF-8"),
            (b"halyard-lock-state 1\nepoch 1\n", "first line"),
            (b"halyard-kafka-mirror-lock 1\n", "no epoch line"),
            (b"halyard-kafka-mirror-lock 1\nepoch x\n", "not a number"),
            (
                b"halyard-kafka-mirror-lock 1\nepoch 1\nstate-epoch 1\n",
                "no in-sync",
            ),
            (
                b"halyard-kafka-mirror-lock 1\nepoch 1\nstate-epoch 2\nin-sync a\n",
                "newer than",
            ),
            (
                b"halyard-kafka-mirror-lock 1\nepoch 2\nstate-epoch 2\nin-sync a\nmore\n",
                "unexpected line",
            ),
        ] {
            let e = decode(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
