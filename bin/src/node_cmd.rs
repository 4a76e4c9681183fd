//! `halyard node`.

use std::path::PathBuf;
use std::process::ExitCode;

use halyard_core::node::Node;
use halyard_io::kafka::{spawn_kafka_journal, spawn_kafka_lock, KafkaLockConfig};
use halyard_io::local::{spawn_file_lock, spawn_local_journal, FileLockConfig, LocalJournalConfig};
use halyard_io::server::{self, ServerConfig};
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{self, Backend, NodeSettings};

/// What the start-up on the auxiliary runtime hands to the node's runtime.
struct Started {
    node: Node,
    config: ServerConfig,
    journal: halyard_io::journal::JournalHandle,
    lock: halyard_io::lock::LockHandle,
    inputs_rx: tokio::sync::mpsc::Receiver<halyard_core::node::Input>,
    stop_rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    queries_rx: tokio::sync::mpsc::Receiver<server::Query>,
}

pub fn run(
    config_file: Option<PathBuf>,
    cli: NodeSettings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let file = match &config_file {
        Some(p) => config::load_file(p)?,
        None => NodeSettings::default(),
    };
    let r = config::resolve(config::merge(&cli, &file))?;
    let mirror_lock = match &r.mirror {
        Some(m) => Some(crate::mirror_config::lock_service(m)?),
        None => None,
    };
    let filter =
        EnvFilter::try_new(&r.log).map_err(|e| format!("invalid log filter {:?}: {e}", r.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    // Certificates and keys are read now, so a bad file stops the start.
    let tls = r
        .tls
        .as_ref()
        .map(halyard_io::tls::load)
        .transpose()?
        .map(std::sync::Arc::new);
    if let Some(s) = &r.node.security {
        info!(
            users = s.users.len(),
            rules = s.rules.len(),
            "security file loaded: clients log in"
        );
    }
    // Two runtimes. The node's loop and its client connections share one
    // thread (a current-thread runtime): a socket's bytes reach the node,
    // and the node's answers the socket, without waking another thread
    // (measured side by side with the binary before: less node CPU per
    // message and more throughput; docs/bench.md "One thread for the node
    // and its sockets"). Everything else (HTTP, the file, ZooKeeper and
    // coordinated locks, the peer port, mirroring, the disk watch, signals,
    // TLS handshakes) runs on a runtime of its own, one worker per core as
    // before, so that none of it holds the node up; the journal backends,
    // the Kafka lock and the Kafka bridge have threads of their own.
    let aux = tokio::runtime::Builder::new_multi_thread()
        .thread_name("halyard-aux")
        .enable_all()
        .build()?;
    let node_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = aux.block_on(async move {
        server::check_listen(r.listen).await?;
        if let Some(t) = &tls {
            server::check_listen(t.listen).await?;
        }
        info!(
            listen = %r.listen,
            data_dir = %r.data_dir.display(),
            lock_dir = %r.lock_dir.display(),
            role = r.node.role.as_str(),
            journal = match r.backend {
                Backend::Local => "local",
                Backend::Kafka { .. } => "kafka",
            },
            "halyard {} starting",
            env!("CARGO_PKG_VERSION")
        );
        let (inputs_tx, inputs_rx) = server::input_channel();
        let journal_metrics = std::sync::Arc::new(halyard_io::metrics::JournalMetrics::new());
        let (journal, lock, bridge) = match &r.backend {
            Backend::Local => {
                let mut jc = LocalJournalConfig::new(r.data_dir.join("journal"));
                jc.segment_bytes = r.segment_bytes;
                jc.fsync = r.fsync;
                // The disk limit watches the journal's own filesystem (the
                // folder is made here so that the first reading finds it).
                let _ = std::fs::create_dir_all(&jc.dir);
                halyard_io::disk::spawn_disk_watch(jc.dir.clone(), inputs_tx.clone());
                if let (Some(m), Some(service)) = (&r.mirror, mirror_lock.clone()) {
                    let (journal, lock) = crate::mirror_config::spawn_mirrored(
                        m,
                        service,
                        &r.node.node_id,
                        (r.node.role, r.node.allow_failback),
                        jc,
                        inputs_tx.clone(),
                        journal_metrics.clone(),
                    )
                    .await?;
                    (journal, lock, halyard_io::bridge::BridgeHandle::none())
                } else {
                let journal = spawn_local_journal(jc, inputs_tx.clone(), journal_metrics.clone());
                let lock = spawn_file_lock(
                    FileLockConfig {
                        dir: r.lock_dir.clone(),
                        role: r.node.role,
                        allow_failback: r.node.allow_failback,
                        poll_ms: 200,
                    },
                    inputs_tx.clone(),
                );
                let bridge = match (&r.node.bridge, &r.bridge_kafka) {
                    (Some(b), Some(k)) => {
                        info!(
                            bootstrap = %k.bootstrap,
                            prefix = %b.prefix,
                            routes = b.routes.len(),
                            "Kafka bridge on (local journal: outbox, at least once): addresses {}<topic> <-> Kafka topics",
                            b.prefix
                        );
                        let forwarder = halyard_io::kafka::spawn_bridge_forwarder(
                            k.clone(),
                            inputs_tx.clone(),
                            Default::default(),
                        );
                        halyard_io::kafka::spawn_bridge_reader(
                            k.clone(),
                            b.clone(),
                            inputs_tx.clone(),
                            Some(forwarder),
                        )
                    }
                    _ => halyard_io::bridge::BridgeHandle::none(),
                };
                (journal, lock, bridge)
                }
            }
            Backend::Kafka {
                config,
                session_timeout_ms,
                heartbeat_ms,
            } => {
                info!(
                    bootstrap = %config.bootstrap,
                    journal_topic = %config.journal_topic(),
                    lock_group = %config.lock_group(),
                    session_timeout_ms,
                    "journal and live lock in Kafka"
                );
                let journal =
                    spawn_kafka_journal(config.clone(), inputs_tx.clone(), journal_metrics.clone());
                let lock = spawn_kafka_lock(
                    KafkaLockConfig {
                        kafka: config.clone(),
                        role: r.node.role,
                        allow_failback: r.node.allow_failback,
                        node_id: r.node.node_id.clone(),
                        session_timeout_ms: *session_timeout_ms,
                        heartbeat_interval_ms: *heartbeat_ms,
                    },
                    inputs_tx.clone(),
                );
                let bridge = match &r.node.bridge {
                    Some(b) => {
                        info!(
                            prefix = %b.prefix,
                            routes = b.routes.len(),
                            "Kafka bridge on: addresses {}<topic> <-> Kafka topics",
                            b.prefix
                        );
                        halyard_io::kafka::spawn_bridge_reader(
                            config.clone(),
                            b.clone(),
                            inputs_tx.clone(),
                            None,
                        )
                    }
                    None => halyard_io::bridge::BridgeHandle::none(),
                };
                (journal, lock, bridge)
            }
        };
        let node = Node::new(r.node.clone());
        let counters = std::sync::Arc::new(server::IoCounters::default());
        let (queries_tx, queries_rx) = server::query_channel();
        if let Some(addr) = r.http {
            crate::http::start(
                addr,
                crate::http::HttpState {
                    queries: queries_tx.clone(),
                    io: counters.clone(),
                    journal: journal_metrics.clone(),
                    max_queues: r.metrics_max_queues,
                    started: std::time::Instant::now(),
                    peers: r.peer_http.clone(),
                    self_url: format!("http://{addr}"),
                    history: Default::default(),
                    security: r.node.security.clone(),
                },
            )
            .await?;
        }
        let (stop_tx, stop_rx) = tokio::sync::mpsc::unbounded_channel();
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate())?;
            let int = signal(SignalKind::interrupt())?;
            tokio::spawn(forward_stop_signals(term, int, stop_tx));
        }
        // Fenced preemption: the peer port says whether this node is live.
        let live_epoch = match &r.preemption {
            Some(p) => {
                let (tx, rx) = tokio::sync::watch::channel(None);
                halyard_io::peer::start(p.clone(), rx, inputs_tx.clone()).await?;
                Some(tx)
            }
            None => None,
        };
        Ok::<_, Box<dyn std::error::Error>>(Started {
            node,
            config: ServerConfig {
                tls,
                handshakes: Some(tokio::runtime::Handle::current()),
                live_epoch,
                ..ServerConfig::new(r.listen, counters, bridge)
            },
            journal,
            lock,
            inputs_rx,
            stop_rx,
            queries_rx,
        })
    })?;
    node_rt.block_on(server::run(
        started.node,
        started.config,
        started.journal,
        started.lock,
        started.inputs_rx,
        started.stop_rx,
        started.queries_rx,
    ))?;
    info!("halyard stopped");
    Ok(ExitCode::SUCCESS)
}

/// Sends one message per SIGTERM or Ctrl-C. The listeners are installed
/// before the node starts (and before this is spawned), so no signal is lost.
async fn forward_stop_signals(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) {
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if tx.send(()).is_err() {
            return;
        }
    }
}
