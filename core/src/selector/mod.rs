//! JMS message selectors (Jakarta Messaging 3.1, section 3.8.1), for the
//! AMQP `jms-selector` filter and the STOMP `selector` header.
//!
//! ```
//! use halyard_core::message::{Body, Message, Routing, Value};
//! use halyard_core::selector::Selector;
//!
//! let s = Selector::parse("color = 'red' AND weight BETWEEN 1 AND 5").unwrap();
//! let mut m = Message::new("q", Routing::Anycast, Body::Text("x".into()));
//! m.application.push(("color".into(), Value::from("red")));
//! m.application.push(("weight".into(), Value::Int(3)));
//! assert!(s.matches(&m, 1));
//! assert_eq!(s.to_string(), "color = 'red' AND weight BETWEEN 1 AND 5");
//! ```
//!
//! **Grammar.** The spec's: literals (strings with `''`, Java integers
//! decimal/hex/octal with optional `L`, doubles with optional exponent,
//! `TRUE`/`FALSE`), case-sensitive identifiers, case-insensitive keywords,
//! `=` `<>` `<` `<=` `>` `>=`, `+ - * /` and unary `+ -`, `[NOT] BETWEEN`,
//! `[NOT] IN` (string literals), `[NOT] LIKE` with `%`, `_` and `ESCAPE`,
//! `IS [NOT] NULL`, `NOT`/`AND`/`OR`, parentheses; plus Artemis's `%`
//! (remainder) and comments (`-- ...`, `/* ... */`). Operand types are
//! checked where they are known at parse time (`'a' > 1`, `x = NULL`,
//! `-'a'` are errors with a position).
//!
//! **Identifiers.** `JMSDeliveryMode` (`'PERSISTENT'`/`'NON_PERSISTENT'`),
//! `JMSPriority`, `JMSMessageID`, `JMSTimestamp`, `JMSCorrelationID`,
//! `JMSType`, `JMSExpiration`, `JMSXDeliveryCount` (an argument of
//! [`Selector::matches`]), `JMSXGroupID`, `JMSXGroupSeq`, `JMSXUserID`, and
//! Artemis's `AMQPriority`, `AMQTimestamp`, `AMQDurable`
//! (`'DURABLE'`/`'NON_DURABLE'`), `AMQExpiration`, `AMQUserID`,
//! `AMQGroupID`, `AMQAddress`, `AMQSize` read the message's fields; every
//! other name is an application property.
//!
//! **Truth values.** SQL's three: a message is selected only when the
//! selector is True. A missing property is NULL, and NULL makes
//! comparisons, arithmetic, LIKE, IN and BETWEEN Unknown (`IS NULL` is
//! never Unknown). Values of unlike types (a string and a number) compare
//! False, as the spec says, and `<>` is NOT `=`, so True, as in Artemis;
//! LIKE on a non-string is False and IN on one Unknown, also as in Artemis.
//! The difference between False and Unknown shows only under NOT.
//!
//! **STOMP.** STOMP header values are strings, and a selector converts no
//! strings to numbers: `x > 5` is False for a header `x:7` (write
//! `x = '7'`). Artemis does the same: its STOMP subscriptions hand the
//! selector to the core filter without the `convert_string_expressions:`
//! prefix, and a string compared with a number is False.
//!
//! **Differences from Artemis**, on purpose: `NOT a = 1` is `NOT (a = 1)`
//! as in the spec (Artemis's grammar binds NOT tighter, reading
//! `(NOT a) = 1`); `7 / 2` is 3 (Java's integer division, as the spec asks;
//! Artemis always divides in doubles); an overflowing long sum is the
//! nearest double (Java and Artemis wrap); LIKE patterns match in linear
//! time (Artemis compiles them to backtracking regular expressions);
//! `'PERSISTENT'` is rewritten nowhere (Artemis's translator rewrites that
//! literal anywhere in the selector, even in `color = 'PERSISTENT'`);
//! `JMSMessageID` renders non-`ID:` ids as Qpid JMS does
//! (`ID:AMQP_NO_PREFIX:...`, `ID:AMQP_ULONG:...`) where Artemis prefixes
//! `ID:`; the JMS names work on STOMP too (Artemis translates them for JMS
//! and AMQP clients only); comparisons whose types are known to differ at
//! parse time are errors rather than always False.

mod api;
mod ast;
mod error;
mod eval;
mod fields;
mod lexer;
mod like;
mod limits;
mod parser;
mod value;

pub use api::Selector;
pub use error::SelectorError;
pub use limits::Limits;
pub use value::Truth;
