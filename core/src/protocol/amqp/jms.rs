//! The names Apache Qpid JMS puts on the wire (its AMQP JMS mapping), so the
//! adapter can speak of them without string literals.

use super::value::{Symbol, Value};

/// Message annotation: the JMS message type (a byte, see [`JmsMsgType`]).
pub const JMS_MSG_TYPE: &str = "x-opt-jms-msg-type";
/// Message annotation: the kind of the `to` address (a byte: 0 queue,
/// 1 topic, 2 temporary queue, 3 temporary topic).
pub const JMS_DEST: &str = "x-opt-jms-dest";
/// Message annotation: the kind of the `reply-to` address (as above).
pub const JMS_REPLY_TO: &str = "x-opt-jms-reply-to";
/// Message annotation: absolute delivery time, milliseconds since the epoch.
pub const DELIVERY_TIME: &str = "x-opt-delivery-time";
/// Message annotation: delivery delay in milliseconds.
pub const DELIVERY_DELAY: &str = "x-opt-delivery-delay";
/// Connection capabilities offered in open.
pub const ANONYMOUS_RELAY: &str = "ANONYMOUS-RELAY";
pub const SHARED_SUBS: &str = "SHARED-SUBS";
pub const DELAYED_DELIVERY: &str = "DELAYED_DELIVERY";
/// Open property: where else a client may connect (a list of maps with
/// `hostname`, `port`, optionally `scheme`).
pub const FAILOVER_SERVER_LIST: &str = "failover-server-list";

/// Terminus capabilities naming the node kind.
pub const QUEUE: &str = "queue";
pub const TOPIC: &str = "topic";
pub const TEMPORARY_QUEUE: &str = "temporary-queue";
pub const TEMPORARY_TOPIC: &str = "temporary-topic";
/// Source capabilities of shared and global (client-id free) subscriptions.
pub const SHARED: &str = "shared";
pub const GLOBAL: &str = "global";

/// Filter-set keys Qpid JMS uses.
pub const SELECTOR_FILTER_KEY: &str = "jms-selector";
pub const NO_LOCAL_FILTER_KEY: &str = "no-local";

/// The JMS message types of `x-opt-jms-msg-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JmsMsgType {
    Message,
    Object,
    Map,
    Bytes,
    Stream,
    Text,
}

impl JmsMsgType {
    pub fn from_value(v: &Value) -> Option<JmsMsgType> {
        let Value::Byte(b) = v else {
            return None;
        };
        [
            JmsMsgType::Message,
            JmsMsgType::Object,
            JmsMsgType::Map,
            JmsMsgType::Bytes,
            JmsMsgType::Stream,
            JmsMsgType::Text,
        ]
        .get(usize::try_from(*b).ok()?)
        .copied()
    }

    pub fn to_value(self) -> Value {
        Value::Byte(self as i8)
    }
}

/// Whether `caps` holds `name`.
pub fn has_capability(caps: &[Symbol], name: &str) -> bool {
    caps.iter().any(|c| c.as_str() == name)
}
