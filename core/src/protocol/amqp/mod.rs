//! AMQP 1.0: the type system codec, frames, performatives, message
//! sections, and the server side of the connection, session and link state
//! machines, all sans-IO.
//!
//! # Why our own type system codec
//!
//! `serde_amqp` / `fe2o3-amqp-types` 0.18 were checked first: their
//! dependency tree is clean for `scripts/check-sans-io.sh` (serde,
//! indexmap, ordered-float, serde_bytes; no async runtime). They were not
//! taken because:
//!
//! - Decoding has no bound on nesting. A payload of nested list32s (9 bytes
//!   per level) aborts the whole process with a stack overflow at 20,000
//!   levels (about 180 KB, checked with `serde_amqp::from_slice::<Value>`);
//!   list8s need 3 bytes per level, so one 64 KiB frame gets close, and a
//!   reassembled multi-frame message easily passes it. A stack overflow is
//!   not a panic that a caller can contain: one hostile client would kill
//!   the broker. Bounding it from outside means walking the encoding
//!   ourselves first, which is most of a decoder.
//! - A broker forwards the bare message it received. serde decoding builds
//!   typed values to re-encode; keeping a body as sent needs the crate's
//!   lazy values, which rest on the same unbounded walk. Here
//!   [`Message::decode_lazy`] walks the body with the same bounds as
//!   everything else and keeps it as the bytes sent.
//! - It is one maintainer's 0.x crate, and its derive macros (syn 3,
//!   darling) add build time on a 2-core machine, for about 1,500 lines of
//!   codec that we can test and fuzz ourselves.
//!
//! The connection, session and link state machines ([`connection`]) are
//! ours either way; they know nothing of queues.
//!
//! The codec here bounds depth, items per compound and values per decode
//! ([`DecodeLimits`]), checks every declared size against the bytes that
//! remain before allocating, shares binary values with the input buffer,
//! and never panics on input (see `fuzz/fuzz_targets/amqp_decode.rs`).
//!
//! What a message costs per hop is read and written in place, without a
//! [`Value`] tree: the transfer, disposition and flow performatives, a
//! transfer's or disposition's delivery state, and a message's header and
//! properties (`composite::read_composite`, `composite::FieldEncoder`).
//! Everything else goes through [`Value`]. Both ways give the same bytes,
//! and for any input the same result or the same error
//! (`tests/amqp_in_place.rs` and the message module's test change every
//! byte of valid encodings and compare).

pub mod adapter;
mod composite;
pub mod connection;
mod decode;
mod definitions;
mod delivery_state;
mod encode;
mod error;
mod frame;
pub mod jms;
mod message;
mod performative;
mod sasl;
mod terminus;
mod value;

pub use adapter::AmqpSession;
pub use decode::{decode_value, DecodeLimits, Reader};
pub use definitions::{ReceiverSettleMode, Role, SenderSettleMode};
pub use delivery_state::{DeliveryState, TxnRequest};
pub use encode::{encode_value, to_bytes};
pub use error::{AmqpError, CodecError, Condition};
pub use frame::{
    decode_amqp_body, decode_sasl_body, encode_frame, encode_performative,
    encode_performative_head, FrameDecoder, FrameError, Item, ProtocolHeader, RawFrame,
    AMQP_HEADER, EMPTY_FRAME, FRAME_HEADER_BYTES, MIN_MAX_FRAME_SIZE, SASL_HEADER,
};
pub use message::{Body, BodyKind, Header, Message, Properties};
pub use performative::{Attach, Begin, Detach, Disposition, Flow, Open, Performative, Transfer};
pub use sasl::{SaslCode, SaslFrame};
pub use terminus::{
    AttachTarget, Coordinator, ExpiryPolicy, Source, Target, Terminus, TerminusDurability,
    NO_LOCAL_FILTER_CODE, NO_LOCAL_FILTER_NAME, SELECTOR_FILTER_CODE, SELECTOR_FILTER_NAME,
};
pub use value::{map_get, Described, Descriptor, Map, Symbol, Value};
