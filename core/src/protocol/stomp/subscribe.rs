//! SUBSCRIBE and UNSUBSCRIBE headers, by Artemis's names (its
//! `VersionedStompFrameHandler.onSubscribe`): ack mode, the byte window
//! (`consumer-window-size`) and ActiveMQ Classic's message window
//! (`activemq.prefetchSize`), `no-local`, `selector`, the durable
//! subscription name and its aliases, `subscription-type`. Classic
//! subscription options that would change delivery and that neither
//! Halyard nor Artemis implements are refused rather than ignored.

use crate::broker::AckMode;

use super::frame::Frame;
use super::refused::Refused;

/// ActiveMQ Classic SUBSCRIBE options Halyard does not implement.
const UNSUPPORTED_HEADERS: &[(&str, &str)] = &[
    (
        "activemq.exclusive",
        "exclusive consumers are not supported",
    ),
    ("activemq.priority", "consumer priorities are not supported"),
    (
        "activemq.retroactive",
        "retroactive subscriptions are not supported",
    ),
    (
        "activemq.maximumPendingMessageLimit",
        "pending message limits are not supported",
    ),
];

/// How a subscription takes messages, from its SUBSCRIBE headers.
pub(super) struct SubscribeHeaders {
    pub ack: AckMode,
    /// `consumer-window-size`: unacknowledged bytes (`None`: unbounded).
    pub window_bytes: Option<usize>,
    /// `activemq.prefetchSize`: unacknowledged messages (`None`: unbounded).
    pub window_messages: Option<usize>,
    pub no_local: bool,
    pub selector: Option<String>,
}

impl SubscribeHeaders {
    /// Reads them; `default_window_bytes` applies without
    /// `consumer-window-size` (-1 is unbounded).
    pub fn parse(f: &Frame, default_window_bytes: i64) -> Result<SubscribeHeaders, Refused> {
        for (name, why) in UNSUPPORTED_HEADERS {
            if f.header(name).is_some() {
                return Err(Refused::new(format!("header {name}: {why}")));
            }
        }
        let ack = AckMode::parse(f.header("ack")).ok_or_else(|| {
            Refused::new(format!(
                "invalid ack mode {:?} (auto, client or client-individual)",
                f.header("ack").unwrap_or("")
            ))
        })?;
        let window_bytes = match f.header("consumer-window-size") {
            None => default_window_bytes,
            Some(w) => window(w, "consumer-window-size")?,
        };
        // Classic's prefetch counts messages. (Artemis reads it as a byte
        // window, which for any window smaller than a message means one
        // message at a time; Classic clients mean messages.)
        let window_messages = match f.header("activemq.prefetchSize") {
            None => -1,
            Some(w) => window(w, "activemq.prefetchSize")?,
        };
        let no_local = match f.header("no-local").map(|v| ("no-local", v)).or_else(|| {
            f.header("activemq.noLocal")
                .map(|v| ("activemq.noLocal", v))
        }) {
            None => false,
            Some((_, v)) if v.eq_ignore_ascii_case("true") => true,
            Some((_, v)) if v.eq_ignore_ascii_case("false") => false,
            Some((name, v)) => {
                return Err(Refused::new(format!(
                    "invalid {name} header {v:?} (true or false)"
                )))
            }
        };
        Ok(SubscribeHeaders {
            ack,
            window_bytes: usize::try_from(window_bytes).ok(),
            window_messages: usize::try_from(window_messages).ok(),
            no_local,
            selector: f.header("selector").map(str::to_owned),
        })
    }
}

/// A window header: -1 (unbounded) or a size.
fn window(w: &str, name: &str) -> Result<i64, Refused> {
    w.trim()
        .parse::<i64>()
        .ok()
        .filter(|w| *w >= -1)
        .ok_or_else(|| Refused::new(format!("invalid {name} {w:?}")))
}

/// The routing a SUBSCRIBE asks for on a bare name: Artemis's
/// `subscription-type`, or `destination-type` as Halyard has always read.
pub(super) fn subscription_type(f: &Frame) -> Result<Option<&str>, Refused> {
    match (f.header("subscription-type"), f.header("destination-type")) {
        (Some(s), Some(d)) if !s.eq_ignore_ascii_case(d) => Err(Refused::new(format!(
            "subscription-type {s:?} and destination-type {d:?} disagree"
        ))),
        (Some(s), _) => Ok(Some(s)),
        (None, d) => Ok(d),
    }
}

/// The durable subscription name, by any of Artemis's spellings:
/// `durable-subscription-name`, the deprecated `durable-subscriber-name`,
/// and Classic's `activemq.subscriptionName`.
pub(super) fn durable_name(f: &Frame) -> Option<&str> {
    f.header("durable-subscription-name")
        .or_else(|| f.header("durable-subscriber-name"))
        .or_else(|| f.header("activemq.subscriptionName"))
}
