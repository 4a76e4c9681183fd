//! Mirroring settings of `halyard node` (issue 13): the broker-to-broker
//! listener, the peers to mirror to, sync or async mirroring, and the lock
//! coordinator that decides which broker accepts clients.
//!
//! `--lock-coordinator` takes `file:DIR`, `zookeeper:HOST:PORT[,HOST:PORT...]`
//! or `kafka:HOST:PORT[,...]`. Every refusal names the setting and its value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use halyard_core::coordinator::{
    CHECK_PERIOD_MS_DEFAULT, CHECK_PERIOD_MS_MAX, CHECK_PERIOD_MS_MIN, PEERS_MAX,
};
use serde::Deserialize;

/// `--lock-id` when not given.
pub const LOCK_ID_DEFAULT: &str = "halyard";
/// Longest lock id, in bytes (it names a znode, a file and a Kafka group).
const LOCK_ID_BYTES_MAX: usize = 128;
/// Most servers in a lock coordinator's list.
const SERVERS_MAX: usize = 64;

/// A `HOST:PORT` (a name or an address; IPv6 in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<HostPort, String> {
        let bad = |why: &str| format!("{s:?} is not HOST:PORT: {why}");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not 1..65535"))?;
        if port == 0 {
            return Err(bad("the port is not 1..65535"));
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let ok = match bare {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            }
        };
        if !ok {
            return Err(bad("the host is not a name or an address"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

/// Where the lock lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCoordinator {
    /// `flock` on a file in a folder the brokers share, the epoch and
    /// in-sync set in a state file beside it.
    File(PathBuf),
    /// An Apache ZooKeeper ensemble.
    ZooKeeper(Vec<HostPort>),
    /// Kafka consumer-group membership.
    Kafka(Vec<HostPort>),
}

impl LockCoordinator {
    pub fn kind(&self) -> &'static str {
        match self {
            LockCoordinator::File(_) => "file",
            LockCoordinator::ZooKeeper(_) => "zookeeper",
            LockCoordinator::Kafka(_) => "kafka",
        }
    }
}

fn servers(kind: &str, list: &str) -> Result<Vec<HostPort>, String> {
    let servers: Vec<HostPort> = list
        .split(',')
        .map(|s| s.parse::<HostPort>().map_err(|e| format!("{kind}: {e}")))
        .collect::<Result<_, _>>()?;
    if servers.len() > SERVERS_MAX {
        return Err(format!(
            "{kind}: {} servers, at most {SERVERS_MAX}",
            servers.len()
        ));
    }
    Ok(servers)
}

impl FromStr for LockCoordinator {
    type Err = String;

    fn from_str(s: &str) -> Result<LockCoordinator, String> {
        const FORMS: &str =
            "use file:DIR, zookeeper:HOST:PORT[,HOST:PORT...] or kafka:HOST:PORT[,...]";
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: no kind; {FORMS}"))?;
        match kind {
            "file" if rest.trim().is_empty() => Err(format!("{s:?}: file: needs a folder")),
            "file" => Ok(LockCoordinator::File(PathBuf::from(rest))),
            "zookeeper" => servers(kind, rest).map(LockCoordinator::ZooKeeper),
            "kafka" => servers(kind, rest).map(LockCoordinator::Kafka),
            other => Err(format!("{s:?}: unknown kind {other:?}; {FORMS}")),
        }
    }
}

/// The TOML form: the same text as the flag.
impl<'de> Deserialize<'de> for LockCoordinator {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The settings this module resolves (already layered).
#[derive(Clone, Debug)]
pub struct MirrorSettings {
    pub mirror_listen: Option<SocketAddr>,
    pub mirror: Option<Vec<HostPort>>,
    pub mirror_sync: Option<bool>,
    pub lock_coordinator: Option<LockCoordinator>,
    pub lock_id: Option<String>,
    pub check_period_ms: Option<u64>,
    pub force_active: Option<bool>,
    /// The node's other settings the checks look at.
    pub listen: SocketAddr,
    pub kafka_journal: bool,
}

impl MirrorSettings {
    /// No mirroring setting given, for a node listening on `listen`.
    #[cfg(test)]
    fn none(listen: SocketAddr) -> MirrorSettings {
        MirrorSettings {
            mirror_listen: None,
            mirror: None,
            mirror_sync: None,
            lock_coordinator: None,
            lock_id: None,
            check_period_ms: None,
            force_active: None,
            listen,
            kafka_journal: false,
        }
    }
}

/// Mirroring as resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The broker-to-broker listener (always open, not governed by the lock).
    pub listen: SocketAddr,
    pub peers: Vec<HostPort>,
    /// Receipts wait for every in-sync peer [default: true].
    pub sync: bool,
    pub lock: Option<LockCoordinator>,
    pub lock_id: String,
    pub check_period_ms: u64,
    /// The operator's override of the in-sync rule (docs/mirroring.md).
    pub force_active: bool,
}

fn invalid(flag: &str, value: impl fmt::Display, why: impl fmt::Display) -> String {
    format!("--{flag} {value}: {why}")
}

/// `None` when no mirroring setting is given at all.
pub fn resolve(s: MirrorSettings) -> Result<Option<MirrorConfig>, String> {
    let peers = s.mirror.unwrap_or_default();
    let any = s.mirror_listen.is_some()
        || !peers.is_empty()
        || s.mirror_sync.is_some()
        || s.lock_coordinator.is_some()
        || s.lock_id.is_some()
        || s.check_period_ms.is_some()
        || s.force_active.is_some();
    if !any {
        return Ok(None);
    }
    let Some(listen) = s.mirror_listen else {
        let given = if !peers.is_empty() {
            "--mirror"
        } else if s.lock_coordinator.is_some() {
            "--lock-coordinator"
        } else if s.lock_id.is_some() {
            "--lock-id"
        } else if s.check_period_ms.is_some() {
            "--check-period-ms"
        } else if s.force_active.is_some() {
            "--force-active"
        } else {
            "--mirror-sync"
        };
        return Err(format!(
            "{given} needs --mirror-listen ADDR:PORT (the broker-to-broker listener every mirrored broker opens)"
        ));
    };
    if s.kafka_journal {
        return Err(invalid(
            "mirror-listen",
            listen,
            "mirroring needs a local journal (each broker its own --data-dir); drop --kafka-bootstrap",
        ));
    }
    if listen == s.listen {
        return Err(invalid(
            "mirror-listen",
            listen,
            "must differ from --listen (the client port, which the lock governs)",
        ));
    }
    if peers.len() > PEERS_MAX {
        return Err(format!(
            "--mirror: {} peers, at most {PEERS_MAX}",
            peers.len()
        ));
    }
    for (i, p) in peers.iter().enumerate() {
        if peers[..i].contains(p) {
            return Err(invalid("mirror", p, "given twice"));
        }
        if p.to_string().parse::<SocketAddr>().ok() == Some(listen) {
            return Err(invalid("mirror", p, "is this broker's own --mirror-listen"));
        }
    }
    let lock_id = s.lock_id.unwrap_or_else(|| LOCK_ID_DEFAULT.to_string());
    let id_ok = !lock_id.is_empty()
        && lock_id.len() <= LOCK_ID_BYTES_MAX
        && lock_id != "."
        && lock_id != ".."
        && lock_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        return Err(invalid(
            "lock-id",
            format!("{lock_id:?}"),
            "use 1 to 128 ASCII letters, digits, '.', '_' and '-' (it names a file, a znode and a Kafka group)",
        ));
    }
    let check_period_ms = s.check_period_ms.unwrap_or(CHECK_PERIOD_MS_DEFAULT);
    if !(CHECK_PERIOD_MS_MIN..=CHECK_PERIOD_MS_MAX).contains(&check_period_ms) {
        return Err(invalid(
            "check-period-ms",
            check_period_ms,
            format_args!("must be within {CHECK_PERIOD_MS_MIN}..={CHECK_PERIOD_MS_MAX}"),
        ));
    }
    Ok(Some(MirrorConfig {
        listen,
        peers,
        sync: s.mirror_sync.unwrap_or(true),
        lock: s.lock_coordinator,
        lock_id,
        check_period_ms,
        force_active: s.force_active.unwrap_or(false),
    }))
}

/// The lock service mirroring runs under, or why it cannot run.
pub fn lock_service(m: &MirrorConfig) -> Result<halyard_io::coordinator::LockService, String> {
    use halyard_io::coordinator::LockService;
    match &m.lock {
        None => Err(format!(
            "--mirror-listen {}: mirroring needs --lock-coordinator (file:DIR, zookeeper:HOST:PORT or kafka:HOST:PORT): \
             without a lock both brokers would accept clients",
            m.listen
        )),
        Some(LockCoordinator::File(dir)) => Ok(LockService::File { dir: dir.clone() }),
        Some(LockCoordinator::ZooKeeper(servers)) => Ok(LockService::ZooKeeper {
            hosts: servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            session_timeout_ms: ZOOKEEPER_SESSION_MS,
        }),
        Some(LockCoordinator::Kafka(servers)) => Ok(LockService::Kafka {
            bootstrap: servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            session_timeout_ms: KAFKA_SESSION_MS,
        }),
    }
}

/// The ZooKeeper session timeout of a mirrored broker's lock: a broker
/// whose process hangs loses the lock this long after its last heartbeat.
pub const ZOOKEEPER_SESSION_MS: u64 = 6_000;

/// The Kafka group session timeout of a mirrored broker's lock
/// (`session.timeout.ms` of its member of `halyard-mirror-lock-<lock-id>`):
/// partition 0 moves this long after a broker whose process died or hung
/// last heartbeated. Kafka must allow it (`group.min.session.timeout.ms`,
/// 6 s by default, and `group.max.session.timeout.ms`).
pub const KAFKA_SESSION_MS: u64 = 6_000;

/// The peer timeout: a sync peer silent this long leaves the in-sync set.
fn peer_timeout_ms(check_period_ms: u64) -> u64 {
    (3 * check_period_ms).max(2_000)
}

/// Spawns the mirrored local journal, the mirror link and the coordinated
/// lock; the node's journal and lock ports. `failback`: `--role` and
/// `--allow-failback` (a primary with failback asks for the active role
/// back once in sync; an active backup hands it back).
pub async fn spawn_mirrored(
    m: &MirrorConfig,
    service: halyard_io::coordinator::LockService,
    node_id: &str,
    failback: (halyard_core::ha::Role, bool),
    journal: halyard_io::local::LocalJournalConfig,
    inputs: tokio::sync::mpsc::Sender<halyard_core::node::Input>,
    metrics: std::sync::Arc<halyard_io::metrics::JournalMetrics>,
) -> Result<
    (
        halyard_io::journal::JournalHandle,
        halyard_io::lock::LockHandle,
    ),
    Box<dyn std::error::Error>,
> {
    use halyard_io::coordinator::{spawn_coordinated_lock, CoordinatedLockConfig};
    use halyard_io::mirror::{prepare, MirrorConfig as IoMirror};
    let mut prepared = prepare(
        IoMirror {
            node: node_id.to_string(),
            listen: m.listen,
            peers: m.peers.iter().map(ToString::to_string).collect(),
            sync: m.sync,
            prefers_active: failback == (halyard_core::ha::Role::Primary, true),
            journal: journal.clone(),
        },
        inputs.clone(),
    )
    .await?;
    let handle = halyard_io::local::spawn_local_journal_mirrored(
        journal,
        prepared.journal_inputs.clone(),
        metrics.clone(),
        prepared.tap.take(),
    );
    let mut coordinator = halyard_core::coordinator::CoordinatorConfig::new(node_id);
    coordinator.check_period_ms = m.check_period_ms;
    coordinator.peer_timeout_ms = peer_timeout_ms(m.check_period_ms);
    coordinator.force_active = m.force_active;
    (coordinator.role, coordinator.allow_failback) = failback;
    if coordinator.prefers_active() {
        tracing::info!(
            "failback: a primary with --allow-failback; once in sync with an active backup it takes the active role back"
        );
    }
    if m.force_active {
        tracing::warn!(
            "--force-active: this broker may take the active role although the lock's in-sync set does \
             not name it; what the last active receipted and this broker never received is then lost"
        );
    }
    coordinator.validate()?;
    tracing::info!(
        lock = m.lock.as_ref().map_or("none", LockCoordinator::kind),
        lock_id = %m.lock_id,
        sync = m.sync,
        peers = m.peers.len(),
        "mirroring on: this broker is passive until it holds the lock"
    );
    let (lock, coord) = spawn_coordinated_lock(
        CoordinatedLockConfig {
            coordinator,
            service,
            lock_id: m.lock_id.clone(),
        },
        inputs,
        prepared.before_active(),
    );
    prepared.start(coord, handle.clone(), metrics);
    Ok((handle, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:61616".parse().unwrap()
    }

    fn settings() -> MirrorSettings {
        MirrorSettings {
            mirror_listen: Some("127.0.0.1:47001".parse().unwrap()),
            ..MirrorSettings::none(listen())
        }
    }

    #[test]
    fn lock_coordinators_parse() {
        assert_eq!(
            "file:/shared/locks".parse(),
            Ok(LockCoordinator::File("/shared/locks".into()))
        );
        assert_eq!(
            "zookeeper:zk1:2181,10.0.0.2:2182,[::1]:2183".parse::<LockCoordinator>(),
            Ok(LockCoordinator::ZooKeeper(vec![
                HostPort {
                    host: "zk1".into(),
                    port: 2181
                },
                HostPort {
                    host: "10.0.0.2".into(),
                    port: 2182
                },
                HostPort {
                    host: "[::1]".into(),
                    port: 2183
                },
            ]))
        );
        assert_eq!(
            "kafka:k:9092".parse::<LockCoordinator>().unwrap().kind(),
            "kafka"
        );
        for (bad, says) in [
            ("nfs:/x", "unknown kind \"nfs\""),
            ("/x", "no kind"),
            ("file:", "needs a folder"),
            ("zookeeper:", "not HOST:PORT"),
            ("zookeeper:zk1", "no port"),
            ("zookeeper:zk1:0", "1..65535"),
            ("zookeeper:zk1:2181,", "not HOST:PORT"),
            ("kafka:k:99999", "1..65535"),
            ("kafka:a b:1", "not a name"),
        ] {
            let e = bad.parse::<LockCoordinator>().unwrap_err();
            assert!(
                e.contains(says) && e.contains(bad.split(':').next().unwrap()),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn nothing_given_is_no_mirroring_and_defaults_fill_the_rest() {
        assert_eq!(resolve(MirrorSettings::none(listen())), Ok(None));
        let m = resolve(settings()).unwrap().unwrap();
        assert!(m.sync);
        assert_eq!(m.lock_id, "halyard");
        assert_eq!(m.check_period_ms, 1_000);
        assert_eq!(m.lock, None);
        let msg = lock_service(&m).unwrap_err();
        assert!(msg.contains("mirroring needs --lock-coordinator"), "{msg}");
    }

    #[test]
    fn each_lock_coordinator_has_its_lock_service() {
        use halyard_io::coordinator::LockService;
        let with = |spec: &str| {
            let m = resolve(MirrorSettings {
                lock_coordinator: Some(spec.parse().unwrap()),
                ..settings()
            })
            .unwrap()
            .unwrap();
            lock_service(&m)
        };
        assert_eq!(
            with("file:/shared/locks"),
            Ok(LockService::File {
                dir: "/shared/locks".into()
            })
        );
        assert_eq!(
            with("zookeeper:zk1:2181,zk2:2181"),
            Ok(LockService::ZooKeeper {
                hosts: "zk1:2181,zk2:2181".into(),
                session_timeout_ms: ZOOKEEPER_SESSION_MS,
            })
        );
        assert_eq!(
            with("kafka:k1:9092,[::1]:9093"),
            Ok(LockService::Kafka {
                bootstrap: "k1:9092,[::1]:9093".into(),
                session_timeout_ms: KAFKA_SESSION_MS,
            })
        );
    }

    #[test]
    fn bad_combinations_are_named() {
        let cases: Vec<(MirrorSettings, &str)> = vec![
            (
                MirrorSettings {
                    mirror_listen: None,
                    mirror: Some(vec!["b:1".parse().unwrap()]),
                    ..settings()
                },
                "--mirror needs --mirror-listen",
            ),
            (
                MirrorSettings {
                    mirror_listen: None,
                    lock_id: Some("x".into()),
                    ..settings()
                },
                "--lock-id needs --mirror-listen",
            ),
            (
                MirrorSettings {
                    kafka_journal: true,
                    ..settings()
                },
                "needs a local journal",
            ),
            (
                MirrorSettings {
                    mirror_listen: Some(listen()),
                    ..settings()
                },
                "must differ from --listen",
            ),
            (
                MirrorSettings {
                    mirror: Some(vec!["b:1".parse().unwrap(), "b:1".parse().unwrap()]),
                    ..settings()
                },
                "--mirror b:1: given twice",
            ),
            (
                MirrorSettings {
                    mirror: Some(vec!["127.0.0.1:47001".parse().unwrap()]),
                    ..settings()
                },
                "own --mirror-listen",
            ),
            (
                MirrorSettings {
                    lock_id: Some("a/b".into()),
                    ..settings()
                },
                "--lock-id \"a/b\"",
            ),
            (
                MirrorSettings {
                    check_period_ms: Some(5),
                    ..settings()
                },
                "--check-period-ms 5: must be within 10..=600000",
            ),
            (
                MirrorSettings {
                    check_period_ms: Some(600_001),
                    ..settings()
                },
                "--check-period-ms 600001",
            ),
        ];
        for (s, says) in cases {
            let e = resolve(s).unwrap_err();
            assert!(e.contains(says), "expected {says:?} in {e:?}");
        }
    }
}

#[cfg(test)]
mod force_active_tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:61616".parse().unwrap()
    }

    #[test]
    fn force_active_is_off_unless_asked_and_needs_mirroring() {
        let base = MirrorSettings {
            mirror_listen: Some("127.0.0.1:47001".parse().unwrap()),
            ..MirrorSettings::none(listen())
        };
        assert!(!resolve(base.clone()).unwrap().unwrap().force_active);
        let forced = MirrorSettings {
            force_active: Some(true),
            ..base
        };
        assert!(resolve(forced).unwrap().unwrap().force_active);
        let alone = MirrorSettings {
            force_active: Some(true),
            ..MirrorSettings::none(listen())
        };
        let e = resolve(alone).unwrap_err();
        assert!(e.starts_with("--force-active needs --mirror-listen"), "{e}");
    }
}
