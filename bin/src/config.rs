//! `halyard node` settings: flags, then `HALYARD_*` environment variables,
//! then `--config halyard.toml`, then defaults (first one set wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use halyard_core::broker::{BrokerConfig, DestinationConfig};
use halyard_core::ha::Role;
use halyard_core::node::{amqp_defaults, NodeConfig};
use halyard_core::protocol::amqp::{jms, Value};
use halyard_core::protocol::stomp::Limits;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RoleArg {
    Primary,
    Backup,
}

/// Every node setting. As flags each is optional so that the environment,
/// the config file and the defaults can fill in what is not given.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Address to accept STOMP and AMQP 1.0 clients on (one port, told apart by their first bytes) [default: 127.0.0.1:61616]
    #[arg(long, env = "HALYARD_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Folder for the local journal [default: ./data]
    #[arg(long, env = "HALYARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Folder holding the live lock shared by a live and its backups [default: the data dir]
    #[arg(long, env = "HALYARD_LOCK_DIR", value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Name of this node in logs and activation records [default: halyard-PORT]
    #[arg(long, env = "HALYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Whether this node prefers to be live (primary) or waits (backup) [default: primary]
    #[arg(long, env = "HALYARD_ROLE", value_enum)]
    pub role: Option<RoleArg>,
    /// A returning primary takes the live role back from a backup (mirroring: once in the in-sync set) [default: false]
    #[arg(long, env = "HALYARD_ALLOW_FAILBACK", num_args = 0..=1, default_missing_value = "true")]
    pub allow_failback: Option<bool>,
    /// Heart-beat interval offered to clients, in ms; 0 disables [default: 10000]
    #[arg(long, env = "HALYARD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Deliveries before a message goes to the dead-letter address [default: 10]
    #[arg(long, env = "HALYARD_MAX_DELIVERY_ATTEMPTS")]
    pub max_delivery_attempts: Option<u32>,
    /// Dead-letter address [default: DLQ]
    #[arg(long, env = "HALYARD_DEAD_LETTER_ADDRESS")]
    pub dead_letter_address: Option<String>,
    /// Where expired messages go [default: ExpiryQueue]
    #[arg(long, env = "HALYARD_EXPIRY_ADDRESS")]
    pub expiry_address: Option<String>,
    /// How often queues are scanned for expired messages, in ms [default: 30000]
    #[arg(long, env = "HALYARD_EXPIRY_SCAN_PERIOD_MS")]
    pub expiry_scan_period_ms: Option<u64>,
    /// Destination prefix for anycast (queues) [default: /queue/]
    #[arg(long, env = "HALYARD_ANYCAST_PREFIX")]
    pub anycast_prefix: Option<String>,
    /// Destination prefix for multicast (topics) [default: /topic/]
    #[arg(long, env = "HALYARD_MULTICAST_PREFIX")]
    pub multicast_prefix: Option<String>,
    /// Largest STOMP frame accepted, in bytes [default: 10485760]
    #[arg(long, env = "HALYARD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Local journal segment size in bytes [default: 67108864]
    #[arg(long, env = "HALYARD_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// fsync every group commit; false risks acknowledged data on power loss [default: true]
    #[arg(long, env = "HALYARD_FSYNC", num_args = 0..=1, default_missing_value = "true")]
    pub fsync: Option<bool>,
    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "HALYARD_LOG")]
    pub log: Option<String>,
    /// Kafka bootstrap servers: journal and live lock in Kafka instead of local files
    #[arg(
        long,
        env = "HALYARD_KAFKA_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,..."
    )]
    pub kafka_bootstrap: Option<String>,
    /// Cluster name: the journal topic, lock group and transactional id derive from it [default: halyard]
    #[arg(long, env = "HALYARD_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Extra Kafka client property, e.g. security.protocol=SSL (repeatable)
    #[arg(
        long = "kafka-property",
        env = "HALYARD_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub kafka_properties: Option<Vec<String>>,
    /// Lock group session timeout in ms: how long a silent live keeps the lock [default: 6000]
    #[arg(long, env = "HALYARD_KAFKA_SESSION_TIMEOUT_MS")]
    pub kafka_session_timeout_ms: Option<u64>,
    /// Lock group heartbeat interval in ms [default: the lower of 500 and session timeout / 3]
    #[arg(long, env = "HALYARD_KAFKA_HEARTBEAT_MS")]
    pub kafka_heartbeat_ms: Option<u64>,
    /// Replication factor of the topics Halyard creates [default: 1]
    #[arg(long, env = "HALYARD_KAFKA_REPLICATION_FACTOR")]
    pub kafka_replication_factor: Option<i32>,
    /// Client address of another node of this cluster, offered to AMQP
    /// clients in the open frame's failover-server-list (repeatable)
    #[arg(
        long = "failover-server",
        env = "HALYARD_FAILOVER_SERVERS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub failover_servers: Option<Vec<String>>,
    /// AMQP idle time-out announced in the open frame, in ms: a connection silent this long is closed [default: 30000]
    #[arg(long, env = "HALYARD_AMQP_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub amqp_idle_timeout_ms: Option<u32>,
    /// Serve /metrics, /health/live, /health/ready and /api/ over HTTP on this address (off unless set)
    #[arg(long, env = "HALYARD_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// Queues listed per scrape of /metrics, those with the most messages first (bounds the series) [default: 1000]
    #[arg(long, env = "HALYARD_METRICS_MAX_QUEUES", value_name = "N")]
    pub metrics_max_queues: Option<usize>,
    /// HTTP base URL of another node of this cluster, shown by /api/cluster and the console (repeatable)
    #[arg(
        long = "peer-http",
        env = "HALYARD_PEER_HTTP",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub peer_http: Option<Vec<String>>,
    /// The Kafka bridge: addresses `kafka.<topic>` <-> Kafka topic `<topic>` [default: on with the Kafka journal]
    #[arg(long, env = "HALYARD_BRIDGE", num_args = 0..=1, default_missing_value = "true")]
    pub bridge: Option<bool>,
    /// Prefix of the addresses bridged by default [default: kafka.]
    #[arg(long, env = "HALYARD_BRIDGE_PREFIX", value_name = "PREFIX")]
    pub bridge_prefix: Option<String>,
    /// A bridge route, before the default one: "match=REGEX;address=TEMPLATE[;direction=out|in|both][;key=PROP][;body=text|bytes][;headers=plain|jms][;consume-always=BOOL]" (repeatable; a [[bridge_route]] table in TOML)
    #[arg(
        long = "bridge-route",
        env = "HALYARD_BRIDGE_ROUTE",
        value_name = "ROUTE"
    )]
    pub bridge_route: Option<Vec<crate::bridge_config::RouteArg>>,
    /// Body of messages made from Kafka records on the default route [default: text]
    #[arg(long, env = "HALYARD_BRIDGE_BODY", value_enum)]
    pub bridge_body: Option<crate::bridge_config::BodyArg>,
    /// Header names on the default route: plain property names, or JMS Bridge's jms.<type>.<name> [default: plain]
    #[arg(long, env = "HALYARD_BRIDGE_HEADERS", value_enum)]
    pub bridge_headers: Option<crate::bridge_config::HeadersArg>,
    /// Read a bridged topic even while its address has no subscriptions (default route) [default: false]
    #[arg(long, env = "HALYARD_BRIDGE_CONSUME_ALWAYS", num_args = 0..=1, default_missing_value = "true")]
    pub bridge_consume_always: Option<bool>,
    /// Kafka to bridge to when the journal is local (turns the bridge on, with an outbox: at least once) [default: none]
    #[arg(
        long,
        env = "HALYARD_BRIDGE_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT,..."
    )]
    pub bridge_kafka_bootstrap: Option<String>,
    /// Partitions of a bridged topic Halyard creates on first use [default: 1]
    #[arg(long, env = "HALYARD_BRIDGE_TOPIC_PARTITIONS", value_name = "N")]
    pub bridge_topic_partitions: Option<i32>,
    /// Users, roles and permissions (TOML; see docs/security.md). Without it only loopback listeners are allowed, for anonymous clients
    #[arg(long, env = "HALYARD_SECURITY_FILE", value_name = "FILE")]
    pub security_file: Option<PathBuf>,
    /// Accept anonymous clients on a non-loopback listener without a security file, on purpose [default: false]
    #[arg(long, env = "HALYARD_ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_anonymous: Option<bool>,
    /// Client connections at most; more are refused in their protocol [default: 10000]
    #[arg(long, env = "HALYARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections that have not completed CONNECT / AMQP open, at most [default: 1000]
    #[arg(long, env = "HALYARD_MAX_PENDING_CONNECTIONS", value_name = "N")]
    pub max_pending_connections: Option<usize>,
    /// A TLS client listener (STOMP and AMQP), beside --listen; needs --tls-cert and --tls-key
    #[arg(long, env = "HALYARD_TLS_LISTEN", value_name = "ADDR:PORT")]
    pub tls_listen: Option<SocketAddr>,
    /// The TLS listener's certificate chain (PEM)
    #[arg(long, env = "HALYARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS listener's private key (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "HALYARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM); a certificate's subject CN is its user in the security file
    #[arg(long, env = "HALYARD_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Hold producers back (or refuse their sends, under --address-full-policy fail) while the journal's disk is used above this percentage; they go on below it [default: 90]
    #[arg(long, env = "HALYARD_MAX_DISK_USAGE", value_name = "PERCENT")]
    pub max_disk_usage: Option<f64>,
    /// The messages held in memory, their sizes added up (bodies and headers, and 768 bytes more per message whose body is in memory): under page, bodies past 90% of it stay in the journal (local or Kafka) until consumers reach them; otherwise producers are held back (or refused, under fail) at it; 0 for no limit [default: a quarter of the machine's memory]
    #[arg(long, env = "HALYARD_MAX_MEMORY_BYTES", value_name = "N")]
    pub max_memory_bytes: Option<u64>,
    /// What a send meets while the broker is full: page pages message bodies to the journal past the memory limit (and holds producers back where it cannot: a full disk), block holds producers back (flow control), fail refuses the send with an error [default: page]
    #[arg(long, env = "HALYARD_ADDRESS_FULL_POLICY", value_enum)]
    pub address_full_policy: Option<crate::limits_config::FullPolicyArg>,
    /// The broker-to-broker mirror listener, always open (not governed by the lock); turns mirroring on
    #[arg(long, env = "HALYARD_MIRROR_LISTEN", value_name = "ADDR:PORT")]
    pub mirror_listen: Option<SocketAddr>,
    /// A peer broker's --mirror-listen to mirror every durable change to (repeatable)
    #[arg(
        long = "mirror",
        env = "HALYARD_MIRROR",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub mirror: Option<Vec<crate::mirror_config::HostPort>>,
    /// A receipt waits for every in-sync peer to have the change durable; false mirrors asynchronously (a window of loss) [default: true]
    #[arg(long, env = "HALYARD_MIRROR_SYNC", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub mirror_sync: Option<bool>,
    /// Who accepts clients: file:DIR (flock in a shared folder), zookeeper:HOST:PORT[,HOST:PORT...] or kafka:HOST:PORT[,...] (a Kafka consumer group and a state topic named after --lock-id)
    #[arg(long, env = "HALYARD_LOCK_COORDINATOR", value_name = "KIND:WHERE")]
    pub lock_coordinator: Option<crate::mirror_config::LockCoordinator>,
    /// The lock's name, shared by the brokers of one mirrored group [default: halyard]
    #[arg(long, env = "HALYARD_LOCK_ID", value_name = "NAME")]
    pub lock_id: Option<String>,
    /// How often a passive broker asks for the lock, in ms (10..=600000) [default: 1000]
    #[arg(long, env = "HALYARD_CHECK_PERIOD_MS", value_name = "N")]
    pub check_period_ms: Option<u64>,
    /// Operator override: take the active role even when the lock's in-sync set does not name this broker (accepts losing what it never received; logged every time) [default: false]
    #[arg(long, env = "HALYARD_FORCE_ACTIVE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub force_active: Option<bool>,
    /// Fenced preemption (Kafka journal): this node's peer port, where it says every 100 ms whether it is live; the peers watch it and take over at once when it closes
    #[arg(long, env = "HALYARD_PEER_LISTEN", value_name = "ADDR:PORT")]
    pub peer_listen: Option<SocketAddr>,
    /// Another node's --peer-listen to watch (repeatable): its link closing, or silence for --peer-suspect-ms, while it was live makes this backup fence it and go live without waiting for the lock's session timeout
    #[arg(
        long = "peer",
        env = "HALYARD_PEER",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub peer: Option<Vec<crate::mirror_config::HostPort>>,
    /// Silence from a live peer after which it is suspected gone, in ms [default: 500]
    #[arg(long, env = "HALYARD_PEER_SUSPECT_MS", value_name = "N")]
    pub peer_suspect_ms: Option<u64>,
}

/// Where the journal and the lock live.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Segment files in the data dir and `flock` on the lock dir.
    Local,
    Kafka {
        config: halyard_io::kafka::KafkaConfig,
        session_timeout_ms: u64,
        heartbeat_ms: u64,
    },
}

/// Settings after layering, with defaults applied.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub lock_dir: PathBuf,
    pub segment_bytes: u64,
    pub fsync: bool,
    pub log: String,
    pub node: NodeConfig,
    pub backend: Backend,
    pub http: Option<SocketAddr>,
    pub metrics_max_queues: usize,
    pub peer_http: Vec<String>,
    /// The Kafka a local-journal node bridges to (`None` otherwise).
    pub bridge_kafka: Option<halyard_io::kafka::KafkaConfig>,
    /// The TLS listener's settings (`None`: no TLS listener).
    pub tls: Option<halyard_io::tls::TlsSettings>,
    /// Mirroring and its lock coordinator (`None`: not asked for).
    pub mirror: Option<crate::mirror_config::MirrorConfig>,
    /// Fenced preemption's peer port (`None`: not asked for).
    pub preemption: Option<halyard_io::peer::PeerConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {name} = {value}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("invalid Kafka bridge setting: {0}")]
    Bridge(String),
    #[error("{0}")]
    Security(String),
    #[error("{0}")]
    Limits(String),
    #[error("{0}")]
    Mirror(String),
    #[error("{0}")]
    Peer(String),
}

pub fn load_file(path: &Path) -> Result<NodeSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

macro_rules! layer {
    ($cli:expr, $file:expr, $($f:ident),*) => {
        NodeSettings { $($f: $cli.$f.clone().or($file.$f.clone()),)* }
    };
}

/// Flags and environment (already merged by clap) over the file.
pub fn merge(cli: &NodeSettings, file: &NodeSettings) -> NodeSettings {
    layer!(
        cli,
        file,
        listen,
        data_dir,
        lock_dir,
        node_id,
        role,
        allow_failback,
        heartbeat_ms,
        max_delivery_attempts,
        dead_letter_address,
        expiry_address,
        expiry_scan_period_ms,
        anycast_prefix,
        multicast_prefix,
        max_frame_bytes,
        segment_bytes,
        fsync,
        log,
        kafka_bootstrap,
        cluster_id,
        kafka_properties,
        kafka_session_timeout_ms,
        kafka_heartbeat_ms,
        kafka_replication_factor,
        failover_servers,
        amqp_idle_timeout_ms,
        http,
        metrics_max_queues,
        peer_http,
        bridge,
        bridge_prefix,
        bridge_route,
        bridge_body,
        bridge_headers,
        bridge_consume_always,
        bridge_topic_partitions,
        bridge_kafka_bootstrap,
        security_file,
        allow_anonymous,
        max_connections,
        max_pending_connections,
        tls_listen,
        tls_cert,
        tls_key,
        tls_client_ca,
        max_disk_usage,
        max_memory_bytes,
        address_full_policy,
        mirror_listen,
        mirror,
        mirror_sync,
        lock_coordinator,
        lock_id,
        check_period_ms,
        force_active,
        peer_listen,
        peer,
        peer_suspect_ms
    )
}

/// One entry of AMQP's failover-server-list, as Qpid JMS reads it.
fn failover_entry(server: &str) -> Result<Value, ConfigError> {
    let bad = || ConfigError::Invalid {
        name: "failover_servers",
        value: server.to_string(),
        why: "must be HOST:PORT",
    };
    let (host, port) = server.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Value::Map(vec![
        (
            Value::symbol("network-host"),
            Value::String(host.to_string()),
        ),
        (Value::symbol("port"), Value::Int(i32::from(port))),
        (Value::symbol("scheme"), Value::String("amqp".into())),
    ]))
}

pub fn resolve(s: NodeSettings) -> Result<Resolved, ConfigError> {
    let listen = s
        .listen
        .unwrap_or_else(|| "127.0.0.1:61616".parse().expect("default address"));
    let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
    let lock_dir = s.lock_dir.unwrap_or_else(|| data_dir.clone());
    let mut limits = Limits::default();
    if let Some(m) = s.max_frame_bytes {
        if m < 1024 {
            return Err(ConfigError::Invalid {
                name: "max_frame_bytes",
                value: m.to_string(),
                why: "must be at least 1024",
            });
        }
        limits.frame_bytes_max = m;
        limits.pending_bytes_max = limits.pending_bytes_max.max(m + 64 * 1024);
    }
    let mut broker = BrokerConfig::default();
    if let Some(n) = s.max_delivery_attempts {
        broker.delivery_attempts_max = n;
    }
    if let Some(d) = s.dead_letter_address {
        if d.is_empty() {
            return Err(ConfigError::Invalid {
                name: "dead_letter_address",
                value: d,
                why: "must not be empty",
            });
        }
        broker.dead_letter_address = d;
    }
    if let Some(e) = s.expiry_address {
        if e.is_empty() {
            return Err(ConfigError::Invalid {
                name: "expiry_address",
                value: e,
                why: "must not be empty",
            });
        }
        broker.expiry_address = e;
    }
    if let Some(ms) = s.expiry_scan_period_ms {
        if ms == 0 {
            return Err(ConfigError::Invalid {
                name: "expiry_scan_period_ms",
                value: ms.to_string(),
                why: "must be at least 1",
            });
        }
        broker.expiry_scan_period_ms = ms;
    }
    let mut destinations = DestinationConfig::default();
    if let Some(p) = s.anycast_prefix {
        destinations.anycast_prefix = p;
    }
    if let Some(p) = s.multicast_prefix {
        destinations.multicast_prefix = p;
    }
    if !destinations.anycast_prefix.is_empty()
        && destinations.anycast_prefix == destinations.multicast_prefix
    {
        return Err(ConfigError::Invalid {
            name: "multicast_prefix",
            value: destinations.multicast_prefix,
            why: "must differ from anycast_prefix",
        });
    }
    let segment_bytes = s.segment_bytes.unwrap_or(64 * 1024 * 1024);
    if segment_bytes < 4096 {
        return Err(ConfigError::Invalid {
            name: "segment_bytes",
            value: segment_bytes.to_string(),
            why: "must be at least 4096",
        });
    }
    let mut amqp = amqp_defaults();
    if let Some(servers) = s.failover_servers.filter(|v| !v.is_empty()) {
        amqp.properties = Some(vec![(
            Value::symbol(jms::FAILOVER_SERVER_LIST),
            Value::List(
                servers
                    .iter()
                    .map(|s| failover_entry(s))
                    .collect::<Result<_, _>>()?,
            ),
        )]);
    }
    if let Some(ms) = s.amqp_idle_timeout_ms {
        if ms != 0 && ms < 1_000 {
            return Err(ConfigError::Invalid {
                name: "amqp_idle_timeout_ms",
                value: ms.to_string(),
                why: "must be 0 (none) or at least 1000",
            });
        }
        amqp.idle_timeout_ms = ms;
    }
    let node = NodeConfig {
        node_id: s
            .node_id
            .unwrap_or_else(|| format!("halyard-{}", listen.port())),
        role: match s.role.unwrap_or(RoleArg::Primary) {
            RoleArg::Primary => Role::Primary,
            RoleArg::Backup => Role::Backup,
        },
        allow_failback: s.allow_failback.unwrap_or(false),
        limits,
        destinations,
        broker,
        heartbeat_ms: s.heartbeat_ms.unwrap_or(10_000),
        amqp,
        ..NodeConfig::default()
    };
    let mirror = crate::mirror_config::resolve(crate::mirror_config::MirrorSettings {
        mirror_listen: s.mirror_listen,
        mirror: s.mirror.clone(),
        mirror_sync: s.mirror_sync,
        lock_coordinator: s.lock_coordinator.clone(),
        lock_id: s.lock_id.clone(),
        check_period_ms: s.check_period_ms,
        force_active: s.force_active,
        listen,
        kafka_journal: s
            .kafka_bootstrap
            .as_ref()
            .is_some_and(|b| !b.trim().is_empty()),
    })
    .map_err(ConfigError::Mirror)?;
    let preemption = crate::peer_config::resolve(crate::peer_config::PeerSettings {
        peer_listen: s.peer_listen,
        peer: s.peer.clone(),
        peer_suspect_ms: s.peer_suspect_ms,
        kafka_journal: s
            .kafka_bootstrap
            .as_ref()
            .is_some_and(|b| !b.trim().is_empty()),
        node_id: &node.node_id,
        taken: &[
            ("--listen", Some(listen)),
            ("--http", s.http),
            ("--tls-listen", s.tls_listen),
        ],
    })
    .map_err(ConfigError::Peer)?;
    if let Some(m) = &mirror {
        if s.http == Some(m.listen) || s.tls_listen == Some(m.listen) {
            return Err(ConfigError::Mirror(format!(
                "--mirror-listen {}: must differ from --http and --tls-listen",
                m.listen
            )));
        }
    }
    // With a local journal these name the bridge's Kafka clients.
    let bridge_cluster_id = s.cluster_id.clone().unwrap_or_else(|| "halyard".into());
    let bridge_properties: Vec<(String, String)> = s
        .kafka_properties
        .iter()
        .flatten()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let backend = match crate::kafka_config::resolve(crate::kafka_config::KafkaSettings {
        bootstrap: s.kafka_bootstrap,
        cluster_id: s.cluster_id,
        properties: s.kafka_properties,
        replication_factor: s.kafka_replication_factor,
        session_timeout_ms: s.kafka_session_timeout_ms,
        heartbeat_ms: s.kafka_heartbeat_ms,
    }) {
        Ok(None) => Backend::Local,
        Ok(Some(k)) => Backend::Kafka {
            config: k.config,
            session_timeout_ms: k.session_timeout_ms,
            heartbeat_ms: k.heartbeat_ms,
        },
        Err(crate::kafka_config::Invalid { name, value, why }) => {
            return Err(ConfigError::Invalid { name, value, why })
        }
    };
    let bridge = crate::bridge_config::resolve(
        crate::bridge_config::BridgeSettings {
            enabled: s.bridge,
            prefix: s.bridge_prefix,
            routes: s.bridge_route.unwrap_or_default(),
            body: s.bridge_body,
            headers: s.bridge_headers,
            consume_always: s.bridge_consume_always,
            topic_partitions: s.bridge_topic_partitions,
            bootstrap: s.bridge_kafka_bootstrap,
        },
        match &backend {
            Backend::Kafka { config, .. } => Some(config),
            Backend::Local => None,
        },
        &bridge_cluster_id,
        &bridge_properties,
    )
    .map_err(ConfigError::Bridge)?;
    let mut node = node;
    node.bridge = bridge.config;
    let tls = crate::security_config::resolve(
        crate::security_config::SecuritySettings {
            listen,
            security_file: s.security_file,
            allow_anonymous: s.allow_anonymous,
            max_connections: s.max_connections,
            max_pending_connections: s.max_pending_connections,
            tls_listen: s.tls_listen,
            tls_cert: s.tls_cert,
            tls_key: s.tls_key,
            tls_client_ca: s.tls_client_ca,
        },
        &mut node,
    )
    .map_err(ConfigError::Security)?;
    crate::limits_config::resolve(
        s.max_disk_usage,
        s.max_memory_bytes,
        s.address_full_policy,
        &mut node,
    )
    .map_err(ConfigError::Limits)?;
    // Both journals read paged message bodies back (the Kafka journal from
    // the topic, by offset: io/src/kafka/paged.rs).
    node.journal_reads = true;
    let bridge_kafka = bridge.local_kafka;
    let mut backend = backend;
    if let Backend::Kafka { config, .. } = &mut backend {
        config.bridge_topic_partitions = bridge.partitions;
        // A backup's standby copy holds no more message bodies than the
        // node would once live; the rest as offsets, read at activation.
        config.standby_message_bytes_max = node.page_above_bytes();
    }
    let metrics_max_queues = s.metrics_max_queues.unwrap_or(1000);
    if metrics_max_queues == 0 {
        return Err(ConfigError::Invalid {
            name: "metrics_max_queues",
            value: "0".into(),
            why: "must be at least 1",
        });
    }
    if s.http.is_some_and(|h| h == listen) {
        return Err(ConfigError::Invalid {
            name: "http",
            value: listen.to_string(),
            why: "must differ from listen (the client port)",
        });
    }
    let peer_http = s.peer_http.unwrap_or_default();
    for url in &peer_http {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "peer_http",
                value: url.clone(),
                why: "must be a URL such as http://127.0.0.1:8161",
            });
        }
    }
    Ok(Resolved {
        mirror,
        preemption,
        backend,
        peer_http,
        bridge_kafka,
        tls,
        http: s.http,
        metrics_max_queues,
        listen,
        data_dir,
        lock_dir,
        segment_bytes,
        fsync: s.fsync.unwrap_or(true),
        log: s.log.unwrap_or_else(|| "info".into()),
        node,
    })
}

#[cfg(test)]
mod tests;
