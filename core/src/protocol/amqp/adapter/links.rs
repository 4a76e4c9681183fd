//! What an AMQP link is to the broker, decided from its attach: a
//! producer to an address (or anonymous), a consumer of a queue or a
//! topic subscription (Qpid JMS's naming of durable and shared ones), a
//! transaction coordinator, or a lookup of a durable subscription.

use crate::journal::DurableSub;
use crate::message::Routing;
use crate::protocol::amqp::jms;
use crate::protocol::amqp::{ExpiryPolicy, Source, Symbol, TerminusDurability};

/// Credit given to a producer link, topped up when half is used.
pub const PRODUCER_CREDIT: u32 = 1000;

/// A link as the adapter keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// The client sends; `address` `None` is the anonymous relay (each
    /// message's `to` names its address).
    Producer {
        address: Option<String>,
        routing: Option<Routing>,
    },
    /// The client receives from subscription `sub_id`.
    Consumer {
        sub_id: String,
        /// Detaching with `closed` deletes it.
        durable: Option<DurableSub>,
    },
    /// Attached with a null source to find a durable subscription
    /// (Qpid JMS's unsubscribe): a closing detach deletes it.
    Lookup {
        durable: DurableSub,
    },
    Coordinator,
}

/// The routing a terminus's capabilities ask for.
pub fn routing_of(capabilities: &[Symbol]) -> Option<Routing> {
    if jms::has_capability(capabilities, jms::QUEUE)
        || jms::has_capability(capabilities, jms::TEMPORARY_QUEUE)
    {
        Some(Routing::Anycast)
    } else if jms::has_capability(capabilities, jms::TOPIC)
        || jms::has_capability(capabilities, jms::TEMPORARY_TOPIC)
    {
        Some(Routing::Multicast)
    } else {
        None
    }
}

/// The routing of a message sent through the anonymous relay, from its
/// `x-opt-jms-dest` annotation (0 queue, 1 topic, 2 temporary queue, 3
/// temporary topic).
pub fn routing_of_jms_dest(kind: i8) -> Option<Routing> {
    match kind {
        0 | 2 => Some(Routing::Anycast),
        1 | 3 => Some(Routing::Multicast),
        _ => None,
    }
}

/// A topic subscription named by a Qpid JMS link: `name` (exclusive
/// durable), `name|2`... (shared durable), `name|global`, `name|global2`
/// (shared without client id), `name|volatile1` or
/// `name|global-volatile1` (shared, not durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionName {
    pub name: String,
    pub global: bool,
    pub volatile: bool,
}

impl SubscriptionName {
    pub fn parse(link_name: &str) -> SubscriptionName {
        let (name, suffix) = link_name.split_once('|').unwrap_or((link_name, ""));
        SubscriptionName {
            name: name.to_owned(),
            global: suffix.starts_with("global"),
            volatile: suffix.contains("volatile"),
        }
    }

    /// Its durable identity: the client id scopes it unless it is global.
    pub fn durable(&self, container_id: &str) -> DurableSub {
        DurableSub {
            client_id: if self.global {
                String::new()
            } else {
                container_id.to_owned()
            },
            name: self.name.clone(),
        }
    }
}

/// A durable subscription asks for state that outlives the link.
pub fn is_durable_source(source: &Source) -> bool {
    source.terminus.durable != TerminusDurability::None
        || source.terminus.expiry_policy == ExpiryPolicy::Never
}

pub fn is_shared(source: &Source) -> bool {
    jms::has_capability(&source.terminus.capabilities, jms::SHARED)
}
