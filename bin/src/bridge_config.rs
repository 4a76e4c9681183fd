//! The Kafka bridge's settings: `--bridge`, `--bridge-prefix`,
//! `--bridge-route` (repeatable) and the default route's `--bridge-body`,
//! `--bridge-headers`, `--bridge-consume-always`, `--bridge-topic-partitions`,
//! `--bridge-kafka-bootstrap` (with a local journal), as flags, `HALYARD_*`
//! and TOML (a route is a `[[bridge_route]]` table there, with the keys
//! `match`, `address`, `direction`, `key_property`, `body`, `headers`,
//! `consume_always`).

use std::str::FromStr;

use halyard_core::bridge::{
    BodyKind, BridgeConfig, BridgeMode, Direction, HeaderNaming, RouteSettings, RouteSpec,
    DEFAULT_PREFIX,
};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BodyArg {
    Text,
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeadersArg {
    Plain,
    Jms,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionArg {
    Out,
    In,
    Both,
}

/// One route: `match` (a regex on Kafka topic names), `address` (a
/// template with `${topic}`), and how it bridges.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteArg {
    #[serde(rename = "match")]
    pub pattern: String,
    pub address: String,
    pub direction: Option<DirectionArg>,
    pub key_property: Option<String>,
    pub body: Option<BodyArg>,
    pub headers: Option<HeadersArg>,
    pub consume_always: Option<bool>,
}

impl FromStr for RouteArg {
    type Err = String;

    /// `match=REGEX;address=TEMPLATE[;direction=out|in|both][;key=PROP]
    /// [;body=text|bytes][;headers=plain|jms][;consume-always=true|false]`
    fn from_str(s: &str) -> Result<RouteArg, String> {
        let mut r = RouteArg {
            pattern: String::new(),
            address: String::new(),
            direction: None,
            key_property: None,
            body: None,
            headers: None,
            consume_always: None,
        };
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
            let bad = |what: &str| format!("{k}={v:?}: expected {what}");
            match k.trim() {
                "match" => r.pattern = v.to_string(),
                "address" => r.address = v.to_string(),
                "direction" => {
                    r.direction = Some(match v {
                        "out" => DirectionArg::Out,
                        "in" => DirectionArg::In,
                        "both" => DirectionArg::Both,
                        _ => return Err(bad("out, in or both")),
                    })
                }
                "key" | "key_property" | "key-property" => r.key_property = Some(v.to_string()),
                "body" => {
                    r.body = Some(match v {
                        "text" => BodyArg::Text,
                        "bytes" => BodyArg::Bytes,
                        _ => return Err(bad("text or bytes")),
                    })
                }
                "headers" => {
                    r.headers = Some(match v {
                        "plain" => HeadersArg::Plain,
                        "jms" => HeadersArg::Jms,
                        _ => return Err(bad("plain or jms")),
                    })
                }
                "consume-always" | "consume_always" => {
                    r.consume_always = Some(v.parse().map_err(|_| bad("true or false"))?)
                }
                other => {
                    return Err(format!(
                        "unknown route setting {other:?} (known: match, address, direction, key, body, headers, consume-always)"
                    ))
                }
            }
        }
        if r.pattern.is_empty() || r.address.is_empty() {
            return Err(format!(
                "route {s:?} needs both match=REGEX and address=TEMPLATE"
            ));
        }
        Ok(r)
    }
}

/// What the bridge settings resolve from (the `bridge*` fields of
/// `NodeSettings`).
pub struct BridgeSettings {
    pub enabled: Option<bool>,
    pub prefix: Option<String>,
    pub routes: Vec<RouteArg>,
    pub body: Option<BodyArg>,
    pub headers: Option<HeadersArg>,
    pub consume_always: Option<bool>,
    pub topic_partitions: Option<i32>,
    /// The Kafka a local-journal node bridges to.
    pub bootstrap: Option<String>,
}

fn settings(
    direction: Option<DirectionArg>,
    key_property: Option<String>,
    body: Option<BodyArg>,
    headers: Option<HeadersArg>,
    consume_always: Option<bool>,
) -> RouteSettings {
    RouteSettings {
        direction: match direction.unwrap_or(DirectionArg::Both) {
            DirectionArg::Out => Direction::Out,
            DirectionArg::In => Direction::In,
            DirectionArg::Both => Direction::Both,
        },
        key_property,
        body: match body.unwrap_or(BodyArg::Text) {
            BodyArg::Text => BodyKind::Text,
            BodyArg::Bytes => BodyKind::Bytes,
        },
        headers: match headers.unwrap_or(HeadersArg::Plain) {
            HeadersArg::Plain => HeaderNaming::Plain,
            HeadersArg::Jms => HeaderNaming::Jms,
        },
        consume_always: consume_always.unwrap_or(false),
    }
}

/// The bridge as resolved: its configuration (`None`: off), and with a
/// local journal the Kafka it forwards to and reads from.
pub struct ResolvedBridge {
    pub config: Option<BridgeConfig>,
    pub partitions: i32,
    pub local_kafka: Option<halyard_io::kafka::KafkaConfig>,
}

/// On by default with the Kafka journal (same cluster, exactly once); with
/// the local journal on when `--bridge-kafka-bootstrap` names a Kafka (an
/// outbox, at least once). Routes are checked even when the bridge is off,
/// so a mistake is found before it is switched on.
pub fn resolve(
    s: BridgeSettings,
    journal_kafka: Option<&halyard_io::kafka::KafkaConfig>,
    cluster_id: &str,
    properties: &[(String, String)],
) -> Result<ResolvedBridge, String> {
    let partitions = s.topic_partitions.unwrap_or(1);
    if !(1..=10_000).contains(&partitions) {
        return Err(format!(
            "bridge_topic_partitions = {partitions}: must be 1 to 10000"
        ));
    }
    let specs: Vec<RouteSpec> = s
        .routes
        .into_iter()
        .map(|r| RouteSpec {
            pattern: r.pattern,
            template: r.address,
            settings: settings(
                r.direction,
                r.key_property,
                r.body,
                r.headers,
                r.consume_always,
            ),
        })
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        halyard_core::bridge::Route::new(i + 1, spec.clone()).map_err(|e| e.to_string())?;
    }
    let bootstrap = s.bootstrap.filter(|b| !b.trim().is_empty());
    let off = ResolvedBridge {
        config: None,
        partitions,
        local_kafka: None,
    };
    let (mode, local_kafka) = match (journal_kafka, bootstrap) {
        (Some(j), Some(b)) if b != j.bootstrap => {
            return Err(format!(
                "bridge_kafka_bootstrap = {b}: with the Kafka journal the bridge uses the journal's Kafka ({}), whose transactions make it exactly once; leave it unset",
                j.bootstrap
            ));
        }
        (Some(_), _) => (BridgeMode::Transactional, None),
        (None, Some(b)) => {
            let mut k = halyard_io::kafka::KafkaConfig::new(b, cluster_id);
            k.properties = properties.to_vec();
            k.bridge_topic_partitions = partitions;
            (BridgeMode::Outbox, Some(k))
        }
        (None, None) => {
            if s.enabled == Some(true) {
                return Err("bridge = true: with the local journal the Kafka bridge needs a Kafka to bridge to (--bridge-kafka-bootstrap HOST:PORT)".into());
            }
            return Ok(off);
        }
    };
    if s.enabled == Some(false) {
        return Ok(off);
    }
    let mut config = BridgeConfig::new(
        s.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        settings(None, None, s.body, s.headers, s.consume_always),
        specs,
        cluster_id.to_string(),
        mode,
    )
    .map_err(|e| e.to_string())?;
    // Never bridge this cluster's own topics (other Halyard clusters'
    // journal and lock topics are left out by name, in the core).
    let k = journal_kafka.or(local_kafka.as_ref()).expect("a Kafka");
    config.excluded_topics = vec![k.journal_topic(), k.lock_group()];
    Ok(ResolvedBridge {
        config: Some(config),
        partitions,
        local_kafka,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_flag_parses_and_bad_ones_are_named() {
        let r: RouteArg = "match=orders-.*;address=shop.${topic};direction=in;body=bytes;headers=jms;consume-always=true"
            .parse()
            .unwrap();
        assert_eq!(r.pattern, "orders-.*");
        assert_eq!(r.direction, Some(DirectionArg::In));
        assert_eq!(r.consume_always, Some(true));
        let e = "match=x".parse::<RouteArg>().unwrap_err();
        assert!(e.contains("address"), "{e}");
        let e = "match=x;address=a.${topic};direction=sideways"
            .parse::<RouteArg>()
            .unwrap_err();
        assert!(e.contains("sideways"), "{e}");
    }

    #[test]
    fn on_with_kafka_off_without_and_bad_routes_refused() {
        let kafka = halyard_io::kafka::KafkaConfig::new("127.0.0.1:9092", "c1");
        let base = || BridgeSettings {
            enabled: None,
            prefix: None,
            routes: vec![],
            body: None,
            headers: None,
            consume_always: None,
            topic_partitions: None,
            bootstrap: None,
        };
        let c = resolve(base(), Some(&kafka), "c1", &[])
            .unwrap()
            .config
            .unwrap();
        assert_eq!(c.mode, BridgeMode::Transactional);
        assert_eq!(c.outbound("kafka.test").unwrap().topic, "test");
        assert!(c.outbound("kafka.halyard-c1-journal").is_none());
        assert!(resolve(base(), None, "c1", &[]).unwrap().config.is_none());
        let e = resolve(
            BridgeSettings {
                enabled: Some(true),
                ..base()
            },
            None,
            "c1",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.contains("bridge-kafka-bootstrap"), "{e}");
        // A local journal with a Kafka to bridge to: the outbox.
        let r = resolve(
            BridgeSettings {
                bootstrap: Some("127.0.0.1:9092".into()),
                ..base()
            },
            None,
            "c1",
            &[],
        )
        .unwrap();
        assert_eq!(r.config.unwrap().mode, BridgeMode::Outbox);
        assert_eq!(r.local_kafka.unwrap().bootstrap, "127.0.0.1:9092");
        // Bad routes are refused even with the bridge off.
        let e = resolve(
            BridgeSettings {
                routes: vec!["match=(;address=a.${topic}".parse().unwrap()],
                ..base()
            },
            None,
            "c1",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.contains("not a valid regex"), "{e}");
    }
}
