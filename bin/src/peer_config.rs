//! Fenced preemption's settings (`--peer-listen`, `--peer`,
//! `--peer-suspect-ms`): the peer port this node answers on and the peers it
//! watches. Only the Kafka journal fences by producer epoch, which is what
//! makes acting on a suspicion safe, so the settings need it.

use std::net::SocketAddr;

use halyard_core::ha::watch::{PEERS_MAX, STATUS_LINE_MAX};
use halyard_io::peer::{PeerConfig, HEARTBEAT_MS_DEFAULT, SUSPECT_MS_DEFAULT};

use crate::mirror_config::HostPort;

/// Bounds of `--peer-suspect-ms`: above two heartbeats, below a typical
/// Kafka session (past it preemption would gain nothing).
const SUSPECT_MS_MIN: u64 = 2 * HEARTBEAT_MS_DEFAULT + 1;
const SUSPECT_MS_MAX: u64 = 60_000;

pub struct PeerSettings<'a> {
    pub peer_listen: Option<SocketAddr>,
    pub peer: Option<Vec<HostPort>>,
    pub peer_suspect_ms: Option<u64>,
    pub kafka_journal: bool,
    pub node_id: &'a str,
    /// Ports already taken by other listeners of this node, with their flags.
    pub taken: &'a [(&'static str, Option<SocketAddr>)],
}

/// `None` when preemption is not asked for; an error names the setting.
pub fn resolve(s: PeerSettings<'_>) -> Result<Option<PeerConfig>, String> {
    let peers = s.peer.unwrap_or_default();
    let Some(listen) = s.peer_listen else {
        if !peers.is_empty() {
            return Err(format!(
                "--peer {}: needs --peer-listen (this node's own peer port, which the peers watch)",
                peers[0]
            ));
        }
        if let Some(ms) = s.peer_suspect_ms {
            return Err(format!("--peer-suspect-ms {ms}: needs --peer-listen"));
        }
        return Ok(None);
    };
    if !s.kafka_journal {
        return Err(format!(
            "--peer-listen {listen}: fenced preemption needs the Kafka journal (--kafka-bootstrap); \
             a local pair's file lock already moves as soon as the live process dies"
        ));
    }
    for (flag, addr) in s.taken {
        if *addr == Some(listen) {
            return Err(format!("--peer-listen {listen}: must differ from {flag}"));
        }
    }
    // The id travels as one word of the status line.
    let id_ok = !s.node_id.is_empty()
        && s.node_id.len() <= STATUS_LINE_MAX / 2
        && !s
            .node_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !id_ok {
        return Err(format!(
            "--node-id {:?}: with --peer-listen it must be 1..={} bytes without spaces",
            s.node_id,
            STATUS_LINE_MAX / 2
        ));
    }
    if peers.len() > PEERS_MAX {
        return Err(format!(
            "--peer: {} peers given, at most {PEERS_MAX}",
            peers.len()
        ));
    }
    let suspect_ms = s.peer_suspect_ms.unwrap_or(SUSPECT_MS_DEFAULT);
    if !(SUSPECT_MS_MIN..=SUSPECT_MS_MAX).contains(&suspect_ms) {
        return Err(format!(
            "--peer-suspect-ms {suspect_ms}: must be {SUSPECT_MS_MIN}..={SUSPECT_MS_MAX} (the peer heartbeat is {HEARTBEAT_MS_DEFAULT} ms)"
        ));
    }
    Ok(Some(PeerConfig {
        node_id: s.node_id.to_string(),
        listen,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        heartbeat_ms: HEARTBEAT_MS_DEFAULT,
        suspect_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(
        listen: Option<&str>,
        peers: &[&str],
        suspect: Option<u64>,
        kafka: bool,
    ) -> PeerSettings<'a> {
        PeerSettings {
            peer_listen: listen.map(|l| l.parse().unwrap()),
            peer: (!peers.is_empty()).then(|| peers.iter().map(|p| p.parse().unwrap()).collect()),
            peer_suspect_ms: suspect,
            kafka_journal: kafka,
            node_id: "a",
            taken: &[("--listen", None)],
        }
    }

    #[test]
    fn preemption_needs_a_peer_port_and_the_kafka_journal() {
        assert!(resolve(settings(None, &[], None, true)).unwrap().is_none());
        let c = resolve(settings(
            Some("127.0.0.1:7001"),
            &["b:7002", "c:7003"],
            None,
            true,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.peers, ["b:7002", "c:7003"]);
        assert_eq!(c.suspect_ms, SUSPECT_MS_DEFAULT);
        for (s, flag) in [
            (settings(None, &["b:7002"], None, true), "--peer b:7002"),
            (
                settings(None, &[], Some(400), true),
                "--peer-suspect-ms 400",
            ),
            (
                settings(Some("127.0.0.1:7001"), &[], None, false),
                "--peer-listen 127.0.0.1:7001",
            ),
            (
                settings(Some("127.0.0.1:7001"), &[], Some(100), true),
                "--peer-suspect-ms 100",
            ),
        ] {
            let e = resolve(s).unwrap_err();
            assert!(e.starts_with(flag), "{e}");
        }
    }

    #[test]
    fn the_peer_port_is_a_port_of_its_own() {
        let mut s = settings(Some("127.0.0.1:7001"), &[], None, true);
        let taken = [("--http", Some("127.0.0.1:7001".parse().unwrap()))];
        s.taken = &taken;
        assert!(resolve(s).unwrap_err().contains("must differ from --http"));
        let mut s = settings(Some("127.0.0.1:7001"), &[], None, true);
        s.node_id = "node a";
        assert!(resolve(s).unwrap_err().starts_with("--node-id"));
    }
}
