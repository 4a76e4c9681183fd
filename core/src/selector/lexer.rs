//! Selector text into tokens.
//!
//! Literals follow Java's syntax, as the spec asks: decimal, hex (`0x1F`)
//! and octal (`017`) integers with an optional `L`, and doubles with an
//! optional exponent (`7.`, `.5`, `1E-3`). Comments (`-- ...` to the end of
//! the line, `/* ... */`) are skipped, as Artemis does.

use super::error::{char_position, excerpt, SelectorError};

/// The words the grammar reserves, matched without regard to case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kw {
    Not,
    And,
    Or,
    Between,
    Like,
    In,
    Is,
    Escape,
    True,
    False,
    Null,
}

const KEYWORDS: [(&str, Kw); 11] = [
    ("NOT", Kw::Not),
    ("AND", Kw::And),
    ("OR", Kw::Or),
    ("BETWEEN", Kw::Between),
    ("LIKE", Kw::Like),
    ("IN", Kw::In),
    ("IS", Kw::Is),
    ("ESCAPE", Kw::Escape),
    ("TRUE", Kw::True),
    ("FALSE", Kw::False),
    ("NULL", Kw::Null),
];

impl Kw {
    pub(super) fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    /// An exact numeric literal's magnitude: a sign before it is a token of
    /// its own, and only the parser knows whether `9223372036854775808` is
    /// the magnitude of `Long.MIN_VALUE`.
    Int(u64),
    Float(f64),
    Kw(Kw),
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    LParen,
    RParen,
    Comma,
}

impl Tok {
    /// The token as an error message names it.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {}", excerpt(s)),
            Tok::Str(s) => format!("string '{}'", excerpt(s)),
            Tok::Int(n) => format!("number {n}"),
            Tok::Float(f) => format!("number {f:?}"),
            Tok::Kw(k) => k.name().to_string(),
            op => format!("'{}'", op.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::Eq => "=",
            Tok::Ne => "<>",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            _ => "?",
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) at: usize,
}

/// Java's identifier characters, approximated by Unicode's classes.
fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

struct Lexer<'s> {
    src: &'s str,
    bytes: &'s [u8],
    i: usize,
}

/// The tokens of `src`, in order.
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, SelectorError> {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    while let Some(t) = lx.next()? {
        out.push(t);
    }
    Ok(out)
}

impl Lexer<'_> {
    fn peek_byte(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.i + ahead).copied()
    }

    fn pos(&self, byte: usize) -> usize {
        char_position(self.src, byte)
    }

    fn next(&mut self) -> Result<Option<Token>, SelectorError> {
        self.skip_blanks()?;
        let at = self.i;
        let Some(c) = self.src[at..].chars().next() else {
            return Ok(None);
        };
        let two = |lx: &mut Lexer, t: Tok| {
            lx.i += 2;
            t
        };
        let one = |lx: &mut Lexer, t: Tok| {
            lx.i += 1;
            t
        };
        let tok = match c {
            '\'' => self.string()?,
            '0'..='9' => self.number()?,
            '.' if self.peek_byte(1).is_some_and(|b| b.is_ascii_digit()) => self.number()?,
            '=' => one(self, Tok::Eq),
            '<' => match self.peek_byte(1) {
                Some(b'>') => two(self, Tok::Ne),
                Some(b'=') => two(self, Tok::Le),
                _ => one(self, Tok::Lt),
            },
            '>' => match self.peek_byte(1) {
                Some(b'=') => two(self, Tok::Ge),
                _ => one(self, Tok::Gt),
            },
            '!' if self.peek_byte(1) == Some(b'=') => {
                return Err(SelectorError::BangEquals {
                    position: self.pos(at),
                })
            }
            '+' => one(self, Tok::Plus),
            '-' => one(self, Tok::Minus),
            '*' => one(self, Tok::Star),
            '/' => one(self, Tok::Slash),
            '%' => one(self, Tok::Percent),
            '(' => one(self, Tok::LParen),
            ')' => one(self, Tok::RParen),
            ',' => one(self, Tok::Comma),
            c if ident_start(c) => self.word(),
            c => {
                return Err(SelectorError::UnexpectedChar {
                    found: c,
                    position: self.pos(at),
                })
            }
        };
        Ok(Some(Token { tok, at }))
    }

    /// Skips white space (Java's: space, tab, form feed, line terminators)
    /// and comments.
    fn skip_blanks(&mut self) -> Result<(), SelectorError> {
        loop {
            match (self.peek_byte(0), self.peek_byte(1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'), _) => self.i += 1,
                (Some(b'-'), Some(b'-')) => {
                    let rest = &self.bytes[self.i..];
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n' || b == b'\r')
                        .unwrap_or(rest.len());
                    self.i += end;
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.i;
                    match self.src[start + 2..].find("*/") {
                        Some(end) => self.i = start + 2 + end + 2,
                        None => {
                            return Err(SelectorError::UnterminatedComment {
                                position: self.pos(start),
                            })
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A string literal: `'` doubled inside stands for itself.
    fn string(&mut self) -> Result<Tok, SelectorError> {
        let start = self.i;
        let mut out = String::new();
        let mut from = start + 1;
        loop {
            let Some(q) = self.src[from..].find('\'') else {
                return Err(SelectorError::UnterminatedString {
                    position: self.pos(start),
                });
            };
            out.push_str(&self.src[from..from + q]);
            let after = from + q + 1;
            if self.bytes.get(after) == Some(&b'\'') {
                out.push('\'');
                from = after + 1;
            } else {
                self.i = after;
                return Ok(Tok::Str(out));
            }
        }
    }

    fn digits(&mut self, ok: fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.peek_byte(0).is_some_and(ok) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Tok, SelectorError> {
        let start = self.i;
        let bad = |lx: &Lexer| {
            // The whole run of word characters, so the message shows it all.
            let end = lx.src[start..]
                .char_indices()
                .find(|&(_, c)| !(ident_part(c) || c == '.'))
                .map_or(lx.src.len(), |(i, _)| start + i);
            SelectorError::InvalidNumber {
                text: excerpt(&lx.src[start..end]),
                position: lx.pos(start),
            }
        };
        let tok =
            if self.peek_byte(0) == Some(b'0') && matches!(self.peek_byte(1), Some(b'x' | b'X')) {
                self.i += 2;
                if self.digits(|b| b.is_ascii_hexdigit()) == 0 {
                    return Err(bad(self));
                }
                let hex = &self.src[start + 2..self.i];
                self.long_suffix();
                self.int(hex, 16, start)?
            } else {
                let int_digits = self.digits(|b| b.is_ascii_digit());
                let mut float = false;
                if self.peek_byte(0) == Some(b'.') {
                    self.i += 1;
                    self.digits(|b| b.is_ascii_digit());
                    float = true;
                }
                if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
                    let sign = usize::from(matches!(self.peek_byte(1), Some(b'+' | b'-')));
                    if !self.peek_byte(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                        return Err(bad(self));
                    }
                    self.i += 1 + sign;
                    self.digits(|b| b.is_ascii_digit());
                    float = true;
                }
                let text = &self.src[start..self.i];
                if float {
                    // Rust's parser wants digits on both sides of the point.
                    let mut norm = String::with_capacity(text.len() + 2);
                    if text.starts_with('.') {
                        norm.push('0');
                    }
                    let (mant, exp) = text.split_at(text.find(['e', 'E']).unwrap_or(text.len()));
                    norm.push_str(mant);
                    if mant.ends_with('.') {
                        norm.push('0');
                    }
                    norm.push_str(exp);
                    match norm.parse::<f64>() {
                        Ok(f) if f.is_finite() => Tok::Float(f),
                        Ok(_) => {
                            return Err(SelectorError::NumberOutOfRange {
                                text: excerpt(text),
                                position: self.pos(start),
                            })
                        }
                        Err(_) => return Err(bad(self)),
                    }
                } else {
                    self.long_suffix();
                    if int_digits > 1 && text.starts_with('0') {
                        if !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                            return Err(bad(self));
                        }
                        self.int(&text[1..], 8, start)?
                    } else {
                        self.int(text, 10, start)?
                    }
                }
            };
        // `5abc`, `1.2.3`, `7f`: not numbers Java or the spec know.
        if self.src[self.i..]
            .chars()
            .next()
            .is_some_and(|c| ident_part(c) || c == '.')
        {
            return Err(bad(self));
        }
        Ok(tok)
    }

    fn long_suffix(&mut self) {
        if matches!(self.peek_byte(0), Some(b'l' | b'L')) {
            self.i += 1;
        }
    }

    fn int(&self, digits: &str, radix: u32, start: usize) -> Result<Tok, SelectorError> {
        u64::from_str_radix(digits, radix)
            .map(Tok::Int)
            .map_err(|_| SelectorError::NumberOutOfRange {
                text: excerpt(&self.src[start..self.i]),
                position: self.pos(start),
            })
    }

    fn word(&mut self) -> Tok {
        let start = self.i;
        let end = self.src[start..]
            .char_indices()
            .find(|&(_, c)| !ident_part(c))
            .map_or(self.src.len(), |(i, _)| start + i);
        self.i = end;
        let word = &self.src[start..end];
        match KEYWORDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(word)) {
            Some((_, kw)) => Tok::Kw(*kw),
            None => Tok::Ident(word.to_string()),
        }
    }
}
