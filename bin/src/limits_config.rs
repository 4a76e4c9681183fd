//! Resource limits of `halyard node`: the disk limit, the memory limit and
//! what a send meets while the broker is full (the address-full policy).

use halyard_core::node::{FullPolicy, NodeConfig};
use serde::Deserialize;

/// `--address-full-policy` (Artemis's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FullPolicyArg {
    Page,
    Block,
    Fail,
}

/// `--max-memory-bytes` when not given: a quarter of the machine's memory
/// (the process holds about twice the messages' own bytes, measured), or
/// 1 GiB where the machine's memory cannot be read.
pub fn default_memory_bytes() -> u64 {
    machine_memory_bytes().map_or(1 << 30, |m| m / 4)
}

/// MemTotal from /proc/meminfo.
fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Fills the node's limits. `max_disk_usage` is a percentage of the
/// journal's disk (tenths count: 92.5); `max_memory_bytes` 0 is no limit.
pub fn resolve(
    max_disk_usage: Option<f64>,
    max_memory_bytes: Option<u64>,
    policy: Option<FullPolicyArg>,
    node: &mut NodeConfig,
) -> Result<(), String> {
    node.memory_max_bytes = max_memory_bytes.unwrap_or_else(default_memory_bytes);
    if node.memory_max_bytes != 0 && node.memory_max_bytes < 1 << 20 {
        return Err(format!(
            "--max-memory-bytes {}: must be 0 (no limit) or at least 1048576 (1 MiB)",
            node.memory_max_bytes
        ));
    }
    let pct = max_disk_usage.unwrap_or(90.0);
    if !(pct.is_finite() && pct > 0.0 && pct <= 100.0) {
        return Err(format!(
            "--max-disk-usage {pct}: must be a percentage above 0 and at most 100 (100: only a full disk stops producers)"
        ));
    }
    node.disk_usage_max_permille = (pct * 10.0).round() as u32;
    node.address_full_policy = match policy.unwrap_or(FullPolicyArg::Page) {
        FullPolicyArg::Page => FullPolicy::Page,
        FullPolicyArg::Block => FullPolicy::Block,
        FullPolicyArg::Fail => FullPolicy::Fail,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_policies() {
        let mut n = NodeConfig::default();
        resolve(None, None, None, &mut n).unwrap();
        assert_eq!(n.disk_usage_max_permille, 900);
        assert_eq!(n.address_full_policy, FullPolicy::Page);
        assert_eq!(n.memory_max_bytes, default_memory_bytes());
        assert!(n.memory_max_bytes >= 1 << 20);
        resolve(Some(92.5), Some(0), Some(FullPolicyArg::Fail), &mut n).unwrap();
        assert_eq!(n.memory_max_bytes, 0);
        assert_eq!(n.disk_usage_max_permille, 925);
        assert_eq!(n.address_full_policy, FullPolicy::Fail);
        for bad in [0.0, -1.0, 100.5, f64::NAN] {
            let e = resolve(Some(bad), None, None, &mut n).unwrap_err();
            assert!(e.starts_with("--max-disk-usage"), "{e}");
        }
        let e = resolve(None, Some(1000), None, &mut n).unwrap_err();
        assert!(e.starts_with("--max-memory-bytes 1000"), "{e}");
    }
}
