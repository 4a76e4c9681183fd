//! What the lock's znodes hold, as text so that an operator can read them
//! with `scripts/services/zookeeper.sh cli get /halyard/<lock-id>/state`:
//!
//! - `epoch`: the newest epoch, in decimal (`0` before any acquisition).
//! - `state`: empty until the first holder writes it, then
//!
//!   ```text
//!   halyard-lock-state 1
//!   epoch 7
//!   in-sync node-a node-b
//!   ```
//!
//! - `active`: the holder's node name.
//!
//! Node names therefore hold no whitespace or control characters.

use super::error::ZkLockError;

/// First line of an encoded state: the format and its version.
const STATE_MAGIC: &str = "halyard-lock-state 1";
/// Longest node name, in bytes.
pub const NODE_NAME_BYTES_MAX: usize = 255;
/// Longest lock id, in bytes.
pub const LOCK_ID_BYTES_MAX: usize = 128;

/// What the active broker keeps under the lock: its epoch and the brokers
/// that have every change it made durable (its in-sync set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    pub epoch: u64,
    pub in_sync: Vec<String>,
}

/// The ZooKeeper data version of the state znode: a write names the version
/// it read, and is refused if the znode changed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateVersion(pub(super) i32);

impl StateVersion {
    pub fn get(self) -> i32 {
        self.0
    }
}

/// The state as read, with the version to name when writing it next.
/// `state` is `None` until a holder first writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedState {
    pub state: Option<LockState>,
    pub version: StateVersion,
}

pub fn validate_node_name(name: &str) -> Result<(), ZkLockError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > NODE_NAME_BYTES_MAX {
        Some("longer than 255 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("holds whitespace or a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ZkLockError::Invalid {
            what: "node name",
            value: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A lock id is one znode name: ASCII letters, digits, `.`, `_` and `-`.
pub fn validate_lock_id(id: &str) -> Result<(), ZkLockError> {
    let reason = if id.is_empty() {
        Some("empty")
    } else if id.len() > LOCK_ID_BYTES_MAX {
        Some("longer than 128 bytes")
    } else if id == "." || id == ".." || id == "zookeeper" {
        Some("reserved by ZooKeeper")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ZkLockError::Invalid {
            what: "lock id",
            value: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

pub fn encode_state(state: &LockState) -> Vec<u8> {
    let mut out = format!("{STATE_MAGIC}\nepoch {}\nin-sync", state.epoch);
    for name in &state.in_sync {
        out.push(' ');
        out.push_str(name);
    }
    out.push('\n');
    out.into_bytes()
}

/// Decodes the state znode's data; empty data is "no state written yet".
pub fn decode_state(data: &[u8]) -> Result<Option<LockState>, String> {
    if data.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(STATE_MAGIC) {
        return Err(format!("the first line is not {STATE_MAGIC:?}"));
    }
    let epoch = lines
        .next()
        .and_then(|l| l.strip_prefix("epoch "))
        .ok_or("no epoch line")?;
    let epoch = epoch
        .parse::<u64>()
        .map_err(|e| format!("epoch {epoch:?}: {e}"))?;
    let in_sync = lines
        .next()
        .and_then(|l| l.strip_prefix("in-sync"))
        .ok_or("no in-sync line")?;
    if !in_sync.is_empty() && !in_sync.starts_with(' ') {
        return Err("no in-sync line".to_string());
    }
    let in_sync: Vec<String> = in_sync.split_whitespace().map(str::to_string).collect();
    if lines.next().is_some() {
        return Err("more lines than epoch and in-sync".to_string());
    }
    Ok(Some(LockState { epoch, in_sync }))
}

pub fn encode_epoch(epoch: u64) -> Vec<u8> {
    epoch.to_string().into_bytes()
}

pub fn decode_epoch(data: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
    text.trim()
        .parse::<u64>()
        .map_err(|e| format!("not an epoch: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_reads_as_text() {
        for in_sync in [
            vec![],
            vec!["a".to_string()],
            vec!["a".into(), "b-2".into()],
        ] {
            let state = LockState { epoch: 42, in_sync };
            let bytes = encode_state(&state);
            assert_eq!(decode_state(&bytes), Ok(Some(state.clone())));
        }
        let state = LockState {
            epoch: 7,
            in_sync: vec!["node-a".into(), "node-b".into()],
        };
        assert_eq!(
            String::from_utf8(encode_state(&state)).unwrap(),
            "halyard-lock-state 1\nepoch 7\nin-sync node-a node-b\n"
        );
        assert_eq!(decode_state(b""), Ok(None));
    }

    #[test]
    fn foreign_state_is_refused() {
        for bad in [
            &b"hello"[..],
            b"halyard-lock-state 2\nepoch 1\nin-sync\n",
            b"halyard-lock-state 1\nepoch x\nin-sync\n",
            b"halyard-lock-state 1\nepoch 1\n",
            b"halyard-lock-state 1\nepoch 1\nin-syncx\n",
            b"halyard-lock-state 1\nepoch 1\nin-sync a\nmore\n",
            b"\xff",
        ] {
            assert!(decode_state(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn epochs_are_decimal() {
        assert_eq!(decode_epoch(&encode_epoch(0)), Ok(0));
        assert_eq!(decode_epoch(&encode_epoch(u64::MAX)), Ok(u64::MAX));
        assert!(decode_epoch(b"-1").is_err());
        assert!(decode_epoch(b"").is_err());
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert!(validate_node_name("broker-0").is_ok());
        assert!(validate_node_name("").is_err());
        assert!(validate_node_name("a b").is_err());
        assert!(validate_node_name("a\nb").is_err());
        assert!(validate_node_name(&"x".repeat(256)).is_err());
        assert!(validate_lock_id("mirror-cluster-clients").is_ok());
        assert!(validate_lock_id("a/b").is_err());
        assert!(validate_lock_id("..").is_err());
        assert!(validate_lock_id("").is_err());
    }
}
