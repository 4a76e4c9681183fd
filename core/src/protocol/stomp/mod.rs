//! STOMP 1.0/1.1/1.2 frame codec.
//!
//! Sans-IO: [`Decoder`] is fed whatever bytes arrived with [`Decoder::push`]
//! and hands out complete frames from [`Decoder::next`]; [`encode`] appends a
//! frame to a buffer. Nothing here reads a socket or a clock.
//!
//! Wire format (STOMP 1.2): `COMMAND EOL *(name:value EOL) EOL body NUL`,
//! where EOL is LF or CR LF. Decisions where the specifications leave room:
//!
//! - Every EOL between frames (including the optional EOLs a peer sends
//!   after a frame's NUL) is reported as one [`Decoded::HeartBeat`].
//! - CR LF is accepted as EOL in every version (peers send it regardless of
//!   what they negotiated). So with 1.0/1.1, which cannot escape CR, a header
//!   value cannot end with CR.
//! - Header lines are split at the first raw `:`; a raw `:` later in a value
//!   is accepted, as peers commonly send them.
//! - Until [`Decoder::set_version`] is called, headers are unescaped by the
//!   1.2 rules, except in CONNECT, STOMP and CONNECTED frames, which are
//!   never escaped (spec, for 1.0 compatibility).
//! - Every limit in [`Limits`] is enforced while bytes trickle in, so a
//!   peer can never make the decoder buffer more than
//!   `max(frame_bytes_max, header_line_bytes_max + 1)` bytes of an
//!   incomplete frame.

mod decode;
mod deliver;
mod encode;
mod error;
mod escape;
mod frame;
mod limits;
mod refused;
mod send;
mod session;
mod subscribe;

pub use decode::{Decoded, Decoder};
pub use encode::{encode, encode_to_bytes, FrameWriter, HEARTBEAT};
pub use error::DecodeError;
pub use frame::{Command, Frame, Version};
pub use limits::Limits;
pub use send::DUPLICATE_ID_HEADER;
pub use session::StompSession;
