//! Settings from flags, file and defaults: merged, resolved, checked.

use super::*;

#[test]
fn flags_win_over_file_and_defaults_fill_the_rest() {
    let cli = NodeSettings {
        listen: Some("127.0.0.1:7000".parse().unwrap()),
        ..Default::default()
    };
    let file: NodeSettings =
        toml::from_str("listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nheartbeat_ms = 500\n")
            .unwrap();
    let r = resolve(merge(&cli, &file)).unwrap();
    assert_eq!(r.listen.port(), 7000);
    assert_eq!(r.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(r.node.heartbeat_ms, 500);
    assert_eq!(r.node.broker.delivery_attempts_max, 10);
    assert_eq!(r.node.node_id, "halyard-7000");
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = toml::from_str::<NodeSettings>("lisen = \"x\"").unwrap_err();
    assert!(e.to_string().contains("lisen"), "{e}");
    let e = toml::from_str::<NodeSettings>("listen = \"nowhere\"").unwrap_err();
    assert!(
        e.to_string().contains("listen") || e.to_string().contains("socket"),
        "{e}"
    );
    let s = NodeSettings {
        segment_bytes: Some(10),
        ..Default::default()
    };
    assert!(resolve(s)
        .unwrap_err()
        .to_string()
        .contains("segment_bytes"));
    let s = NodeSettings {
        amqp_idle_timeout_ms: Some(10),
        ..Default::default()
    };
    assert!(resolve(s)
        .unwrap_err()
        .to_string()
        .contains("amqp_idle_timeout_ms"));
    let s = NodeSettings {
        amqp_idle_timeout_ms: Some(6_000),
        ..Default::default()
    };
    assert_eq!(resolve(s).unwrap().node.amqp.idle_timeout_ms, 6_000);
    let s = NodeSettings {
        kafka_bootstrap: Some("127.0.0.1:9092".into()),
        kafka_session_timeout_ms: Some(10),
        ..Default::default()
    };
    let e = resolve(s).unwrap_err().to_string();
    assert!(
        e.starts_with("invalid setting kafka_session_timeout_ms = 10:"),
        "{e}"
    );
}

#[test]
fn mirroring_settings_come_from_toml_too_and_bad_ones_are_named() {
    use crate::mirror_config::{HostPort, LockCoordinator};
    let file: NodeSettings = toml::from_str(
        "mirror_listen = \"127.0.0.1:47001\"\nmirror = [\"127.0.0.1:47002\"]\nmirror_sync = false\nlock_coordinator = \"zookeeper:127.0.0.1:47181\"\nlock_id = \"mirror-cluster-clients\"\ncheck_period_ms = 500\n",
    )
    .unwrap();
    let m = resolve(merge(&NodeSettings::default(), &file))
        .unwrap()
        .mirror
        .expect("mirroring asked for");
    assert_eq!(m.listen.port(), 47001);
    assert_eq!(
        m.peers,
        vec![HostPort {
            host: "127.0.0.1".into(),
            port: 47002
        }]
    );
    assert!(!m.sync);
    assert_eq!(
        m.lock,
        Some(LockCoordinator::ZooKeeper(vec![HostPort {
            host: "127.0.0.1".into(),
            port: 47181
        }]))
    );
    assert_eq!(m.lock_id, "mirror-cluster-clients");
    assert_eq!(m.check_period_ms, 500);
    let e = toml::from_str::<NodeSettings>("lock_coordinator = \"nfs:/x\"").unwrap_err();
    assert!(e.to_string().contains("unknown kind \"nfs\""), "{e}");
    let s = NodeSettings {
        kafka_bootstrap: Some("127.0.0.1:9092".into()),
        mirror_listen: Some("127.0.0.1:47001".parse().unwrap()),
        ..Default::default()
    };
    assert!(resolve(s)
        .unwrap_err()
        .to_string()
        .contains("needs a local journal"));
    let s = NodeSettings {
        http: Some("127.0.0.1:47001".parse().unwrap()),
        mirror_listen: Some("127.0.0.1:47001".parse().unwrap()),
        ..Default::default()
    };
    assert!(resolve(s)
        .unwrap_err()
        .to_string()
        .contains("--mirror-listen"));
    assert!(resolve(NodeSettings::default()).unwrap().mirror.is_none());
}

#[test]
fn the_kafka_journal_pages_and_bounds_its_standby_copy() {
    let s = NodeSettings {
        kafka_bootstrap: Some("127.0.0.1:9092".into()),
        max_memory_bytes: Some(16 << 20),
        ..Default::default()
    };
    let r = resolve(s).unwrap();
    assert!(r.node.journal_reads);
    let Backend::Kafka { config, .. } = &r.backend else {
        panic!("not on Kafka");
    };
    // The paging threshold: 90% of the limit.
    assert_eq!(config.standby_message_bytes_max, (16u64 << 20) * 9 / 10);
    assert_eq!(config.standby_message_bytes_max, r.node.page_above_bytes());
    // No paging (block): the copy keeps everything.
    let s = NodeSettings {
        kafka_bootstrap: Some("127.0.0.1:9092".into()),
        max_memory_bytes: Some(16 << 20),
        address_full_policy: Some(crate::limits_config::FullPolicyArg::Block),
        ..Default::default()
    };
    let Backend::Kafka { config, .. } = resolve(s).unwrap().backend else {
        panic!("not on Kafka");
    };
    assert_eq!(config.standby_message_bytes_max, 0);
}
