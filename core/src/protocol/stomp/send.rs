//! SEND: a frame becomes a protocol-neutral [`Message`], with Artemis's
//! header names for persistence, priority, expiry and scheduled delivery
//! (its `StompUtils.copyStandardHeadersFromFrameToMessage`). A header that
//! would change delivery in Artemis and that Halyard does not implement is
//! refused, never silently stored as a property.

use crate::broker::Destination;
use crate::message::{Body, Message, Properties, Value, PRIORITY_DEFAULT, PRIORITY_MAX};
use crate::Millis;

use super::frame::Frame;
use super::refused::Refused;

/// Artemis's duplicate-detection header, honoured as is.
pub const DUPLICATE_ID_HEADER: &str = "_AMQ_DUPL_ID";
/// Absolute delivery time, ms since the Unix epoch (Artemis extension).
pub(super) const SCHEDULED_TIME_HEADER: &str = "AMQ_SCHEDULED_TIME";
/// Delivery delay from the send, in ms (ActiveMQ Classic's name, which
/// Artemis honours).
pub(super) const SCHEDULED_DELAY_HEADER: &str = "AMQ_SCHEDULED_DELAY";
/// Artemis's own scheduled-delivery property: a client that sets it as a
/// header schedules the message in Artemis, so it does here too; MESSAGE
/// frames of scheduled messages carry it, as Artemis's do.
pub(super) const SCHEDULED_PROPERTY: &str = "_AMQ_SCHED_DELIVERY";

/// Headers that steer the broker (or that the broker writes itself on
/// MESSAGE frames) and are not stored with the message.
fn is_control_header(name: &str) -> bool {
    matches!(
        name,
        "destination"
            | "destination-type"
            | "receipt"
            | "transaction"
            | "content-length"
            | "persistent"
            | "priority"
            | "expires"
            | "timestamp"
            | "message-id"
            | "subscription"
            | "ack"
            | "redelivered"
            | "delivery-count"
            | "correlation-id"
            | "reply-to"
            | "type"
            | DUPLICATE_ID_HEADER
            | SCHEDULED_TIME_HEADER
            | SCHEDULED_DELAY_HEADER
            | SCHEDULED_PROPERTY
    )
}

/// Headers Artemis (or ActiveMQ Classic, whose names Artemis clients use)
/// acts on and Halyard does not: refused with the reason.
const UNSUPPORTED_HEADERS: &[(&str, &str)] = &[
    ("JMSXGroupID", "message groups are not supported"),
    ("JMSXGroupSeq", "message groups are not supported"),
    ("_AMQ_GROUP_ID", "message groups are not supported"),
    ("_AMQ_GROUP_SEQUENCE", "message groups are not supported"),
    (
        "AMQ_SCHEDULED_PERIOD",
        "repeated scheduled delivery is not supported",
    ),
    (
        "AMQ_SCHEDULED_REPEAT",
        "repeated scheduled delivery is not supported",
    ),
    (
        "AMQ_SCHEDULED_CRON",
        "repeated scheduled delivery is not supported",
    ),
];

/// The first occurrence of each header a SEND is read for, found in one
/// pass over the frame (a SEND is read for a dozen headers).
#[derive(Default)]
struct SendHeaders<'a> {
    persistent: Option<&'a str>,
    priority: Option<&'a str>,
    expires: Option<&'a str>,
    delay: Option<&'a str>,
    scheduled_time: Option<&'a str>,
    scheduled_property: Option<&'a str>,
    content_length: bool,
    dup_id: Option<&'a str>,
    correlation_id: Option<&'a str>,
    reply_to: Option<&'a str>,
    subject: Option<&'a str>,
    /// The earliest of [`UNSUPPORTED_HEADERS`] present.
    unsupported: Option<usize>,
}

impl<'a> SendHeaders<'a> {
    fn scan(f: &'a Frame) -> SendHeaders<'a> {
        let mut h = SendHeaders::default();
        for (name, value) in f.headers() {
            let slot = match name {
                "persistent" => &mut h.persistent,
                "priority" => &mut h.priority,
                "expires" => &mut h.expires,
                SCHEDULED_DELAY_HEADER => &mut h.delay,
                SCHEDULED_TIME_HEADER => &mut h.scheduled_time,
                SCHEDULED_PROPERTY => &mut h.scheduled_property,
                DUPLICATE_ID_HEADER => &mut h.dup_id,
                "correlation-id" => &mut h.correlation_id,
                "reply-to" => &mut h.reply_to,
                "type" => &mut h.subject,
                "content-length" => {
                    h.content_length = true;
                    continue;
                }
                _ => {
                    if let Some(i) = UNSUPPORTED_HEADERS.iter().position(|(n, _)| *n == name) {
                        h.unsupported = Some(h.unsupported.map_or(i, |j| j.min(i)));
                    }
                    continue;
                }
            };
            // The first occurrence is the one that counts.
            slot.get_or_insert(value);
        }
        h
    }
}

/// The message a SEND frame carries, received at `now`.
pub(super) fn message_from_send(
    f: &Frame,
    dest: Destination,
    now: Millis,
) -> Result<Message, Refused> {
    let h = SendHeaders::scan(f);
    if let Some((name, why)) = h.unsupported.map(|i| UNSUPPORTED_HEADERS[i]) {
        return Err(Refused::new(format!("header {name}: {why}")));
    }
    let durable = match h.persistent {
        None => true,
        Some(p) if p.eq_ignore_ascii_case("true") => true,
        Some(p) if p.eq_ignore_ascii_case("false") => false,
        Some(p) => return Err(Refused::new(format!("invalid persistent header {p:?}"))),
    };
    let priority = match h.priority {
        None => PRIORITY_DEFAULT,
        Some(p) => match p.trim().parse::<u64>() {
            // Higher priorities are clamped (JMS defines 0-9).
            Ok(n) => u8::try_from(n.min(u64::from(PRIORITY_MAX))).unwrap_or(PRIORITY_MAX),
            Err(_) => {
                return Err(Refused::new(format!(
                    "invalid priority header {p:?} (0 to 9)"
                )))
            }
        },
    };
    // Absolute ms since the Unix epoch; 0 means never (JMS).
    let expiration_ms = match time_header("expires", h.expires)? {
        Some(0) | None => None,
        Some(t) => Some(t),
    };
    // Artemis applies the delay, then the absolute time; a value of 0 (or
    // a negative delay) schedules nothing.
    let mut deliver_at_ms = None;
    if let Some(d) = h.delay {
        let delay = d
            .trim()
            .parse::<i64>()
            .map_err(|_| Refused::new(format!("invalid {SCHEDULED_DELAY_HEADER} header {d:?}")))?;
        if let Ok(d) = u64::try_from(delay) {
            if d > 0 {
                deliver_at_ms = Some(now.saturating_add(d));
            }
        }
    }
    for (name, value) in [
        (SCHEDULED_TIME_HEADER, h.scheduled_time),
        (SCHEDULED_PROPERTY, h.scheduled_property),
    ] {
        if let Some(t) = time_header(name, value)?.filter(|t| *t > 0) {
            deliver_at_ms = Some(t);
        }
    }
    let mut application: Vec<(String, Value)> = Vec::new();
    for (k, v) in f.headers() {
        // First occurrence wins, as for every STOMP header.
        if !is_control_header(k) && !application.iter().any(|(n, _)| n == k) {
            application.push((k.to_owned(), Value::String(v.to_owned())));
        }
    }
    // A body with a length is bytes (Artemis: a BytesMessage); without
    // one it is text.
    let body = if h.content_length {
        Body::Bytes(f.body.clone())
    } else {
        Body::Text(f.body.clone())
    };
    Ok(Message {
        address: dest.address,
        routing: dest.routing,
        durable,
        priority,
        expiration_ms,
        deliver_at_ms,
        dup_id: h.dup_id.map(str::to_owned),
        // The broker stamps the send time, as Artemis does for STOMP (its
        // `timestamp` header, JMSTimestamp for JMS consumers).
        // `correlation-id`, `reply-to` and `type` are JMSCorrelationID,
        // JMSReplyTo and JMSType, as Artemis maps them.
        properties: Some(Box::new(Properties {
            creation_time_ms: i64::try_from(now).ok(),
            correlation_id: h.correlation_id.map(|v| Value::String(v.to_owned())),
            reply_to: h.reply_to.map(str::to_owned),
            subject: h.subject.map(str::to_owned),
            ..Properties::default()
        })),
        application,
        annotations: Vec::new(),
        body,
    })
}

/// A time header in ms: absent, or a whole number that is not negative.
fn time_header(name: &str, value: Option<&str>) -> Result<Option<u64>, Refused> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            Refused::new(format!(
                "invalid {name} header {v:?} (ms since the Unix epoch)"
            ))
        }),
    }
}
