//! Resource limits of `halyard node`: the disk limit and what a send meets
//! while the broker is full (the address-full policy).

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

/// Fills the node's limits. `max_disk_usage` is a percentage of the
/// journal's disk (tenths count: 92.5).
pub fn resolve(
    max_disk_usage: Option<f64>,
    policy: Option<FullPolicyArg>,
    node: &mut NodeConfig,
) -> Result<(), String> {
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
        resolve(None, None, &mut n).unwrap();
        assert_eq!(n.disk_usage_max_permille, 900);
        assert_eq!(n.address_full_policy, FullPolicy::Page);
        resolve(Some(92.5), Some(FullPolicyArg::Fail), &mut n).unwrap();
        assert_eq!(n.disk_usage_max_permille, 925);
        assert_eq!(n.address_full_policy, FullPolicy::Fail);
        for bad in [0.0, -1.0, 100.5, f64::NAN] {
            let e = resolve(Some(bad), None, &mut n).unwrap_err();
            assert!(e.starts_with("--max-disk-usage"), "{e}");
        }
    }
}
