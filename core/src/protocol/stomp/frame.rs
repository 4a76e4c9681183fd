//! Frames, commands and protocol versions.

use bytes::Bytes;

/// A STOMP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// All versions, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` and `version` headers.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses `"1.0"`, `"1.1"` or `"1.2"`.
    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The highest version we share with a client whose CONNECT carried
    /// this `accept-version` header (a comma-separated list); a missing
    /// header means 1.0 (spec). `None` if there is no common version.
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        match accept_version {
            None => Some(Version::V1_0),
            Some(list) => list
                .split(',')
                .filter_map(|v| Version::parse(v.trim()))
                .max(),
        }
    }
}

/// A STOMP command: the first line of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    // Client frames.
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    // Server frames.
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as written on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command line (without its EOL). Commands are case-sensitive.
    pub fn parse(line: &[u8]) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes() == line)
    }

    /// CONNECT, STOMP and CONNECTED frames never escape their headers, so
    /// that 1.0 peers can read them before a version is negotiated.
    pub(crate) fn is_never_escaped(&self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

/// One STOMP frame.
///
/// Headers keep their order and repetitions as on the wire; [`Frame::header`]
/// returns the first occurrence, which is the one that counts (STOMP 1.2).
///
/// The headers are held as their unescaped `name:value\n` lines back to
/// back in one string: a frame costs two allocations however many headers
/// it has (a MESSAGE has a dozen), and a line known to hold no byte that
/// some version escapes is already its wire form, copied whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    /// Every header as `name:value\n`, unescaped, in order.
    text: String,
    /// Per header, where its name and its value end in `text` (at its `:`
    /// and its `\n`); each name starts one byte after the previous value.
    ends: Vec<HeaderEnds>,
    pub body: Bytes,
}

#[derive(Clone, Copy, Debug, Eq)]
pub(crate) struct HeaderEnds {
    name: u32,
    value: u32,
    /// Known to hold no byte that is escaped on the wire (`\\`, LF, `:`,
    /// CR), so the line is its own wire form in every version. Decoded
    /// lines are not checked (few are ever encoded again).
    plain: bool,
}

impl HeaderEnds {
    /// A decoded line's ends (not checked for escapes).
    pub(crate) fn new(name_end: usize, value_end: usize) -> HeaderEnds {
        // The decoder bounds a frame's header bytes below 4 GiB.
        let to_u32 = |n: usize| u32::try_from(n).expect("STOMP frame headers over 4 GiB");
        HeaderEnds {
            name: to_u32(name_end),
            value: to_u32(value_end),
            plain: false,
        }
    }

    pub(crate) fn name_end(&self) -> usize {
        self.name as usize
    }

    pub(crate) fn value_end(&self) -> usize {
        self.value as usize
    }
}

/// Frames are equal when their headers are: whether a line was checked for
/// escapes is not part of what it says.
impl PartialEq for HeaderEnds {
    fn eq(&self, other: &HeaderEnds) -> bool {
        (self.name, self.value) == (other.name, other.value)
    }
}

/// Headers room is made for up front in frames built for sending.
const HEADERS_HINT: usize = 8;

/// The bytes that escaping may rewrite.
pub(crate) const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t[b':' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

/// `s` has a byte that escaping may rewrite. Every header written is
/// checked, so eight bytes at a time, then the rest byte by byte.
pub(crate) fn has_special(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        if word_has_special(u64::from_le_bytes(b)) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| SPECIAL[usize::from(b)])
}

/// Whether a byte of `x` is one of `SPECIAL`'s four: a byte of `y` is
/// zero exactly where `x` holds the byte looked for, and `(y - 0x01..) &
/// !y & 0x80..` is non-zero exactly when `y` has a zero byte.
fn word_has_special(x: u64) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_at = |byte: u8| {
        let y = x ^ LOW.wrapping_mul(u64::from(byte));
        y.wrapping_sub(LOW) & !y
    };
    (zero_at(b'\\') | zero_at(b'\n') | zero_at(b':') | zero_at(b'\r')) & HIGH != 0
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Frame {
        Frame::with_capacity(command, 0, 0)
    }

    /// A frame with room for `headers` headers of `text_bytes` bytes in all.
    pub fn with_capacity(command: Command, headers: usize, text_bytes: usize) -> Frame {
        Frame {
            command,
            text: String::with_capacity(text_bytes),
            ends: Vec::with_capacity(headers),
            body: Bytes::new(),
        }
    }

    /// The headers as (name, value), in wire order, repetitions included.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |e| {
            let (name_end, value_end) = (e.name as usize, e.value as usize);
            let header = (
                &self.text[start..name_end],
                &self.text[name_end + 1..value_end],
            );
            start = value_end + 1;
            header
        })
    }

    /// How many headers the frame has.
    pub fn header_count(&self) -> usize {
        self.ends.len()
    }

    /// Bytes of all header lines (`name:value\n` each), unescaped.
    pub fn header_bytes(&self) -> usize {
        self.text.len()
    }

    /// Each header as its name, its value, and its whole `name:value\n`
    /// line when that line is known to need no escaping.
    pub(crate) fn header_lines(&self) -> impl Iterator<Item = (&str, &str, Option<&str>)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |e| {
            let (name_end, value_end) = (e.name as usize, e.value as usize);
            let line = e.plain.then(|| &self.text[start..=value_end]);
            let header = (
                &self.text[start..name_end],
                &self.text[name_end + 1..value_end],
                line,
            );
            start = value_end + 1;
            header
        })
    }

    /// The value of the first header called `name` (names are case-sensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        // Compares bytes and makes a `&str` of the match only: this runs
        // several times for every frame.
        let bytes = self.text.as_bytes();
        let mut start = 0usize;
        for e in &self.ends {
            let (name_end, value_end) = (e.name as usize, e.value as usize);
            if bytes[start..name_end] == *name.as_bytes() {
                return self.text.get(name_end + 1..value_end);
            }
            start = value_end + 1;
        }
        None
    }

    /// Appends a header (builder style).
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Frame {
        self.push_header(name, value);
        self
    }

    /// Appends a header. An earlier header of the same name still wins.
    pub fn push_header(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let plain = !has_special(name.as_bytes()) && !has_special(value.as_bytes());
        self.reserve_first();
        self.text.reserve(name.len() + value.len() + 2);
        self.text.push_str(name);
        let name_end = self.text_end();
        self.text.push(':');
        self.text.push_str(value);
        self.end_header(name_end, plain);
    }

    /// A decoded frame's headers: `lines` holds them as `name:value\n`
    /// each, and `ends` says where each name and value ends.
    pub(crate) fn from_decoded(command: Command, lines: String, ends: Vec<HeaderEnds>) -> Frame {
        debug_assert!(ends
            .iter()
            .all(|e| lines.as_bytes().get(e.name_end()) == Some(&b':')
                && lines.as_bytes().get(e.value_end()) == Some(&b'\n')));
        debug_assert_eq!(ends.last().map_or(0, |e| e.value_end() + 1), lines.len());
        Frame {
            command,
            text: lines,
            ends,
            body: Bytes::new(),
        }
    }

    /// Keeps only the headers for which `keep(name, value)` is true.
    pub fn retain_headers(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let kept: Vec<(String, String)> = self
            .headers()
            .filter(|(n, v)| keep(n, v))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        self.text.clear();
        self.ends.clear();
        for (n, v) in kept {
            self.push_header(n, v);
        }
    }

    /// Replaces the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// An ERROR frame: `message` is the short summary header, `detail` the
    /// plain-text body.
    pub fn error(message: &str, detail: &str) -> Frame {
        Frame::new(Command::Error)
            .with_header("message", message)
            .with_header("content-type", "text/plain")
            .with_body(detail.to_owned())
    }

    fn reserve_first(&mut self) {
        if self.ends.capacity() == 0 {
            self.ends.reserve(HEADERS_HINT);
            self.text.reserve(HEADERS_HINT * 24);
        }
    }

    fn text_end(&self) -> u32 {
        // Frames are bounded far below 4 GiB (the decoder's frame limit,
        // and the broker's message limits on what it renders).
        u32::try_from(self.text.len()).expect("STOMP frame headers over 4 GiB")
    }

    /// Ends the header whose name ended at `name_end` with its `\n`.
    fn end_header(&mut self, name_end: u32, plain: bool) {
        let value_end = self.text_end();
        self.text.push('\n');
        self.ends.push(HeaderEnds {
            name: name_end,
            value: value_end,
            plain,
        });
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("command", &self.command)
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body)
            .finish()
    }
}

/// Parses a `content-length` value: ASCII digits only (no sign, no spaces).
/// Values too big for `usize` saturate, as they are over every limit anyway.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::{has_special, SPECIAL};

    /// The word-at-a-time check agrees with the table, for every byte at
    /// every position of strings up to 24 bytes long.
    #[test]
    fn has_special_matches_the_table() {
        for len in 1..=24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    // A byte just below or above a special one must not count.
                    if at + 1 < len {
                        s[at + 1] = b.wrapping_add(1);
                    }
                    let naive = s.iter().any(|&c| SPECIAL[usize::from(c)]);
                    assert_eq!(has_special(&s), naive, "{s:?}");
                }
            }
        }
        assert!(!has_special(b""));
    }
}
