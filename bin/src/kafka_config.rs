//! The Kafka journal's and live lock's settings (`--kafka-bootstrap` and
//! the `--kafka-*` flags), checked and turned into the client config.

use halyard_io::kafka::KafkaConfig;

/// The flags as given (after layering).
pub struct KafkaSettings {
    pub bootstrap: Option<String>,
    pub cluster_id: Option<String>,
    pub properties: Option<Vec<String>>,
    pub replication_factor: Option<i32>,
    pub session_timeout_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
}

/// The Kafka journal and lock, when a bootstrap list was given.
#[derive(Clone, Debug)]
pub struct KafkaBackend {
    pub config: KafkaConfig,
    pub session_timeout_ms: u64,
    pub heartbeat_ms: u64,
}

/// A setting refused: its name (as in the config file), value and why.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub name: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// `None` without a (non-blank) bootstrap list: the local journal.
pub fn resolve(s: KafkaSettings) -> Result<Option<KafkaBackend>, Invalid> {
    let Some(bootstrap) = s.bootstrap.filter(|b| !b.trim().is_empty()) else {
        return Ok(None);
    };
    let cluster_id = s.cluster_id.unwrap_or_else(|| "halyard".into());
    if cluster_id.is_empty()
        || !cluster_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Invalid {
            name: "cluster_id",
            value: cluster_id,
            why: "use letters, digits, '.', '_' and '-' (it names Kafka topics)",
        });
    }
    let mut config = KafkaConfig::new(bootstrap, cluster_id);
    for p in s.properties.unwrap_or_default() {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Invalid {
                name: "kafka_properties",
                value: p,
                why: "each must be KEY=VALUE",
            });
        };
        config
            .properties
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    if let Some(r) = s.replication_factor {
        if r < 1 {
            return Err(Invalid {
                name: "kafka_replication_factor",
                value: r.to_string(),
                why: "must be at least 1",
            });
        }
        config.replication_factor = r;
    }
    let session_timeout_ms = s.session_timeout_ms.unwrap_or(6_000);
    if session_timeout_ms < 1_000 {
        return Err(Invalid {
            name: "kafka_session_timeout_ms",
            value: session_timeout_ms.to_string(),
            why: "must be at least 1000 (and within the broker's group.min/max.session.timeout.ms)",
        });
    }
    // Frequent heartbeats make a clean hand-over (the live leaves the
    // group) reach the backup quickly; a few nodes make little traffic.
    let heartbeat_ms = s
        .heartbeat_ms
        .unwrap_or((session_timeout_ms / 3).min(500))
        .max(100);
    if heartbeat_ms >= session_timeout_ms {
        return Err(Invalid {
            name: "kafka_heartbeat_ms",
            value: heartbeat_ms.to_string(),
            why: "must be lower than kafka_session_timeout_ms",
        });
    }
    Ok(Some(KafkaBackend {
        config,
        session_timeout_ms,
        heartbeat_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(bootstrap: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap: Some(bootstrap.into()),
            cluster_id: None,
            properties: None,
            replication_factor: None,
            session_timeout_ms: None,
            heartbeat_ms: None,
        }
    }

    #[test]
    fn no_or_blank_bootstrap_is_the_local_journal() {
        assert!(resolve(settings(" ")).unwrap().is_none());
        let mut s = settings("");
        s.bootstrap = None;
        assert!(resolve(s).unwrap().is_none());
    }

    #[test]
    fn defaults_and_heartbeat_derived_from_the_session() {
        let k = resolve(settings("127.0.0.1:9092")).unwrap().unwrap();
        assert_eq!((k.session_timeout_ms, k.heartbeat_ms), (6_000, 500));
        assert_eq!(k.config.replication_factor, 1);
        let mut s = settings("127.0.0.1:9092");
        s.session_timeout_ms = Some(1_200);
        let k = resolve(s).unwrap().unwrap();
        assert_eq!(k.heartbeat_ms, 400, "a third of the session");
    }

    #[test]
    fn each_bad_value_is_named() {
        type Spoil = fn(&mut KafkaSettings);
        let cases: [(Spoil, &str); 5] = [
            (|s| s.cluster_id = Some("a/b".into()), "cluster_id"),
            (
                |s| s.properties = Some(vec!["acks".into()]),
                "kafka_properties",
            ),
            (
                |s| s.replication_factor = Some(0),
                "kafka_replication_factor",
            ),
            (
                |s| s.session_timeout_ms = Some(999),
                "kafka_session_timeout_ms",
            ),
            (|s| s.heartbeat_ms = Some(6_000), "kafka_heartbeat_ms"),
        ];
        for (bad, name) in cases {
            let mut s = settings("127.0.0.1:9092");
            bad(&mut s);
            assert_eq!(resolve(s).unwrap_err().name, name);
        }
    }
}
