//! Which addresses are bridged to which Kafka topics, and how.
//!
//! By default an address `<prefix><topic>` (prefix `kafka.`) is bridged to
//! the Kafka topic `<topic>` in both directions. Routes in the
//! configuration come first, in order: a regex on Kafka topic names
//! (anchored: it must match the whole name) and an address template with
//! one `${topic}`, so the mapping runs both ways (address -> topic by
//! taking the template apart, topic -> address by filling it in).

use regex::Regex;
use thiserror::Error;

/// The placeholder in an address template.
pub const TOPIC_PLACEHOLDER: &str = "${topic}";
/// The default prefix of bridged addresses (JMS Bridge's `kafka.`).
pub const DEFAULT_PREFIX: &str = "kafka.";
/// Longest Kafka topic name (Kafka's own limit).
pub const TOPIC_NAME_MAX: usize = 249;
/// Routes in one configuration.
pub const ROUTES_MAX: usize = 256;

/// Which ways a route carries messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Address -> Kafka topic only.
    Out,
    /// Kafka topic -> address only.
    In,
    Both,
}

impl Direction {
    pub fn out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// The body kind of a message made from an incoming record (JMS Bridge's
/// `message.type`: a TextMessage or a BytesMessage).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Text,
    Bytes,
}

/// How message properties are named as Kafka headers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HeaderNaming {
    /// The property's own name; the value as text.
    Plain,
    /// JMS Bridge's `jms.<type>.<name>`, values in its binary encoding.
    Jms,
}

/// How one route bridges (the default route has these too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSettings {
    pub direction: Direction,
    /// The property (or header) whose value is the record key; `None`: the
    /// message's duplicate id if it has one, else no key.
    pub key_property: Option<String>,
    pub body: BodyKind,
    pub headers: HeaderNaming,
    /// Read the topic even while its address has no subscriptions (JMS
    /// Bridge's `consume.always`); otherwise only while it has some.
    pub consume_always: bool,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings {
            direction: Direction::Both,
            key_property: None,
            body: BodyKind::Text,
            headers: HeaderNaming::Plain,
            consume_always: false,
        }
    }
}

/// A configured route.
#[derive(Clone, Debug)]
pub struct Route {
    /// The regex as written (for messages and the docs).
    pub pattern: String,
    matcher: Regex,
    pub template: String,
    /// The template around its `${topic}`.
    before: String,
    after: String,
    pub settings: RouteSettings,
}

/// A route as the configuration spells it, before it is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub pattern: String,
    pub template: String,
    pub settings: RouteSettings,
}

/// A bad bridge configuration: the node refuses to start with it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("bridge route {index}: `match = {pattern:?}` is not a valid regex: {reason}")]
    BadRegex {
        index: usize,
        pattern: String,
        reason: String,
    },
    #[error(
        "bridge route {index}: `address = {template:?}` must contain `${{topic}}` exactly once"
    )]
    BadTemplate { index: usize, template: String },
    #[error("bridge: at most {ROUTES_MAX} routes, got {0}")]
    TooManyRoutes(usize),
    #[error("bridge: the address prefix {0:?} is not allowed (it must be non-empty and have no `/` or wildcard)")]
    BadPrefix(String),
    #[error("bridge: the cluster name {0:?} must be 1 to 64 characters of letters, digits, `.`, `_` or `-`")]
    BadCluster(String),
}

impl Route {
    /// Checks a route; `index` (from 1) names it in errors.
    pub fn new(index: usize, spec: RouteSpec) -> Result<Route, RouteError> {
        // Anchored: `orders.*` means whole names, as Kafka's own patterns do.
        let matcher =
            Regex::new(&format!("^(?:{})$", spec.pattern)).map_err(|e| RouteError::BadRegex {
                index,
                pattern: spec.pattern.clone(),
                reason: e.to_string(),
            })?;
        let mut parts = spec.template.split(TOPIC_PLACEHOLDER);
        let (before, after) = match (parts.next(), parts.next(), parts.next()) {
            (Some(b), Some(a), None) => (b.to_string(), a.to_string()),
            _ => {
                return Err(RouteError::BadTemplate {
                    index,
                    template: spec.template,
                })
            }
        };
        Ok(Route {
            pattern: spec.pattern,
            matcher,
            template: spec.template,
            before,
            after,
            settings: spec.settings,
        })
    }

    /// The address of `topic` under this route, if the route covers it.
    fn address_of(&self, topic: &str) -> Option<String> {
        self.matcher
            .is_match(topic)
            .then(|| format!("{}{topic}{}", self.before, self.after))
    }

    /// The topic of `address` under this route, if the route covers it.
    fn topic_of<'a>(&self, address: &'a str) -> Option<&'a str> {
        let topic = address
            .strip_prefix(self.before.as_str())?
            .strip_suffix(self.after.as_str())?;
        (is_topic_name(topic) && self.matcher.is_match(topic)).then_some(topic)
    }
}

/// Is this a legal Kafka topic name (1 to 249 of `[a-zA-Z0-9._-]`)?
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The bridge's whole configuration.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// Prefix of the default route's addresses.
    pub prefix: String,
    /// Settings of the default route.
    pub default_settings: RouteSettings,
    pub routes: Vec<Route>,
    /// Names this cluster in the loop-guard header of every record the
    /// bridge writes; records carrying it are not read back in.
    pub cluster: String,
    /// Topics never bridged (the journal and lock topics, and Kafka's own
    /// `__` topics, are always left out).
    pub excluded_topics: Vec<String>,
    /// Where bridged records are written: in the journal's own Kafka
    /// transaction (exactly once), or through an outbox (local journal).
    pub mode: BridgeMode,
}

/// How records leave for Kafka.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BridgeMode {
    /// In the same Kafka transaction as the journal batch that stores the
    /// message (the Kafka journal): exactly once.
    Transactional,
    /// Through an outbox the journal keeps, forwarded after the batch is
    /// durable (the local journal): at least once.
    Outbox,
}

/// Where a topic or an address goes, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub topic: String,
    pub address: String,
    pub settings: &'a RouteSettings,
}

impl BridgeConfig {
    /// A checked configuration.
    pub fn new(
        prefix: String,
        default_settings: RouteSettings,
        specs: Vec<RouteSpec>,
        cluster: String,
        mode: BridgeMode,
    ) -> Result<BridgeConfig, RouteError> {
        if prefix.is_empty() || prefix.contains(['/', '*', '#']) {
            return Err(RouteError::BadPrefix(prefix));
        }
        if cluster.is_empty()
            || cluster.len() > 64
            || !cluster
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(RouteError::BadCluster(cluster));
        }
        if specs.len() > ROUTES_MAX {
            return Err(RouteError::TooManyRoutes(specs.len()));
        }
        let routes = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| Route::new(i + 1, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BridgeConfig {
            prefix,
            default_settings,
            routes,
            cluster,
            excluded_topics: Vec::new(),
            mode,
        })
    }

    fn excluded(&self, topic: &str) -> bool {
        // Kafka's own topics, and any Halyard cluster's journal and lock.
        let halyards = topic.starts_with("halyard-")
            && (topic.ends_with("-journal") || topic.ends_with("-lock"));
        halyards || topic.starts_with("__") || self.excluded_topics.iter().any(|t| t == topic)
    }

    /// Where messages sent to `address` go in Kafka, if it is bridged out.
    pub fn outbound(&self, address: &str) -> Option<Mapping<'_>> {
        let m = self.for_address(address)?;
        m.settings.direction.out().then_some(m)
    }

    /// Which address the records of `topic` become messages on, if it is
    /// bridged in.
    pub fn inbound(&self, topic: &str) -> Option<Mapping<'_>> {
        let m = self.for_topic(topic)?;
        m.settings.direction.inbound().then_some(m)
    }

    /// The topic of a bridged address, whichever way it is bridged.
    pub fn topic_of(&self, address: &str) -> Option<Mapping<'_>> {
        self.for_address(address)
    }

    /// Is `address` a bridged one (either way)?
    pub fn is_bridged(&self, address: &str) -> bool {
        self.for_address(address).is_some()
    }

    fn for_address(&self, address: &str) -> Option<Mapping<'_>> {
        for r in &self.routes {
            if let Some(topic) = r.topic_of(address) {
                return (!self.excluded(topic)).then(|| Mapping {
                    topic: topic.to_string(),
                    address: address.to_string(),
                    settings: &r.settings,
                });
            }
        }
        let topic = address.strip_prefix(self.prefix.as_str())?;
        // A topic a route covers is bridged only at that route's address,
        // both ways alike.
        let routed = self.routes.iter().any(|r| r.matcher.is_match(topic));
        (is_topic_name(topic) && !routed && !self.excluded(topic)).then(|| Mapping {
            topic: topic.to_string(),
            address: address.to_string(),
            settings: &self.default_settings,
        })
    }

    fn for_topic(&self, topic: &str) -> Option<Mapping<'_>> {
        if !is_topic_name(topic) || self.excluded(topic) {
            return None;
        }
        for r in &self.routes {
            if let Some(address) = r.address_of(topic) {
                return Some(Mapping {
                    topic: topic.to_string(),
                    address,
                    settings: &r.settings,
                });
            }
        }
        Some(Mapping {
            topic: topic.to_string(),
            address: format!("{}{topic}", self.prefix),
            settings: &self.default_settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(specs: Vec<RouteSpec>) -> BridgeConfig {
        let mut c = BridgeConfig::new(
            DEFAULT_PREFIX.into(),
            RouteSettings::default(),
            specs,
            "c1".into(),
            BridgeMode::Transactional,
        )
        .unwrap();
        c.excluded_topics.push("halyard-journal".into());
        c
    }

    #[test]
    fn default_route_maps_both_ways() {
        let c = config(vec![]);
        let m = c.outbound("kafka.test").unwrap();
        assert_eq!(m.topic, "test");
        assert_eq!(c.inbound("test").unwrap().address, "kafka.test");
        assert!(c.outbound("orders").is_none());
        assert!(c.outbound("kafka.").is_none());
        assert!(c.outbound("kafka.a/b").is_none(), "not a topic name");
        assert!(c.outbound("kafka.halyard-journal").is_none(), "excluded");
        assert!(c.inbound("__consumer_offsets").is_none());
    }

    #[test]
    fn routes_come_first_and_invert_their_template() {
        let c = config(vec![
            RouteSpec {
                pattern: "orders-.*".into(),
                template: "shop.${topic}.events".into(),
                settings: RouteSettings {
                    direction: Direction::In,
                    body: BodyKind::Bytes,
                    ..RouteSettings::default()
                },
            },
            RouteSpec {
                pattern: "metrics".into(),
                template: "kafka.${topic}".into(),
                settings: RouteSettings {
                    direction: Direction::Out,
                    ..RouteSettings::default()
                },
            },
        ]);
        let m = c.inbound("orders-eu").unwrap();
        assert_eq!(m.address, "shop.orders-eu.events");
        assert_eq!(m.settings.body, BodyKind::Bytes);
        assert!(
            c.outbound("shop.orders-eu.events").is_none(),
            "inbound only"
        );
        assert!(c.is_bridged("shop.orders-eu.events"));
        assert!(c.inbound("metrics").is_none(), "outbound only");
        assert_eq!(c.outbound("kafka.metrics").unwrap().topic, "metrics");
        // The default prefix does not reach a topic a route covers.
        assert!(c.outbound("kafka.orders-eu").is_none());
        assert!(!c.is_bridged("kafka.orders-eu"));
        // The regex is anchored: `orders-.*` does not cover `xorders-1`.
        assert_eq!(c.inbound("xorders-1").unwrap().address, "kafka.xorders-1");
    }

    #[test]
    fn bad_configuration_is_named() {
        let bad = |pattern: &str, template: &str| {
            BridgeConfig::new(
                DEFAULT_PREFIX.into(),
                RouteSettings::default(),
                vec![RouteSpec {
                    pattern: pattern.into(),
                    template: template.into(),
                    settings: RouteSettings::default(),
                }],
                "c1".into(),
                BridgeMode::Transactional,
            )
            .unwrap_err()
        };
        assert!(matches!(
            bad("(", "a.${topic}"),
            RouteError::BadRegex { index: 1, .. }
        ));
        assert!(matches!(
            bad(".*", "a.topic"),
            RouteError::BadTemplate { .. }
        ));
        assert!(matches!(
            bad(".*", "${topic}.${topic}"),
            RouteError::BadTemplate { .. }
        ));
        let e = BridgeConfig::new(
            "".into(),
            RouteSettings::default(),
            vec![],
            "c1".into(),
            BridgeMode::Outbox,
        )
        .unwrap_err();
        assert_eq!(e, RouteError::BadPrefix(String::new()));
        let e = BridgeConfig::new(
            "kafka.".into(),
            RouteSettings::default(),
            vec![],
            "bad name".into(),
            BridgeMode::Outbox,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad name"), "{e}");
    }
}
