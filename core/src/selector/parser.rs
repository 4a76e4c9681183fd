//! Tokens into an [`Expr`], by recursive descent over the spec's precedence
//! levels (loosest first): OR, AND, NOT, comparison (`=` `<>` `<` `<=` `>`
//! `>=` `[NOT] BETWEEN` `[NOT] LIKE` `[NOT] IN` `IS [NOT] NULL`, all one
//! level, left to right), `+ -`, `* / %`, unary `+ -`.
//!
//! Operand types are checked where they are known without a message: a
//! literal's, an operator's result's. An identifier may hold anything, so
//! it passes every check and its type is met at evaluation.

use super::ast::{ArithOp, CmpOp, Expr, Lit};
use super::error::{char_position, SelectorError};
use super::fields::Field;
use super::lexer::{tokenize, Kw, Tok, Token};
use super::like::LikePattern;
use super::limits::Limits;

/// What an expression is known to yield before any message is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Num,
    Str,
    /// An identifier: any type, or NULL.
    Any,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Bool => "a condition",
            Kind::Num => "a number",
            Kind::Str => "a string",
            Kind::Any => "a property",
        }
    }
}

/// An expression, its kind, how deep it nests, and where it starts.
struct Node {
    expr: Expr,
    kind: Kind,
    depth: usize,
    at: usize,
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    next: usize,
    limits: &'s Limits,
    terms: usize,
    /// Parentheses open around the current token.
    nesting: usize,
}

/// Parses `src` into an expression that yields a condition.
pub(super) fn parse(src: &str, limits: &Limits) -> Result<Expr, SelectorError> {
    if src.len() > limits.selector_bytes_max {
        return Err(SelectorError::TooLong {
            max: limits.selector_bytes_max,
        });
    }
    let toks = tokenize(src)?;
    if toks.is_empty() {
        return Err(SelectorError::Empty);
    }
    let mut p = Parser {
        src,
        toks,
        next: 0,
        limits,
        terms: 0,
        nesting: 0,
    };
    let node = p.or()?;
    if let Some(t) = p.peek_token() {
        return Err(p.unexpected(t, "an operator or the end of the selector"));
    }
    if !matches!(node.kind, Kind::Bool | Kind::Any) {
        return Err(SelectorError::NotACondition {
            found: node.kind.describe(),
        });
    }
    Ok(node.expr)
}

impl Parser<'_> {
    fn pos(&self, byte: usize) -> usize {
        char_position(self.src, byte)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.toks.get(self.next)
    }

    fn peek(&self) -> Option<&Tok> {
        self.peek_token().map(|t| &t.tok)
    }

    /// Where the next token starts (the end of the text after the last).
    fn here(&self) -> usize {
        self.peek_token().map_or(self.src.len(), |t| t.at)
    }

    fn at_kw(&self, kw: Kw) -> bool {
        self.peek() == Some(&Tok::Kw(kw))
    }

    /// Consumes keyword `kw` if it is next, answering where it stood.
    fn eat_kw(&mut self, kw: Kw) -> Option<usize> {
        self.at_kw(kw).then(|| {
            self.next += 1;
            self.toks[self.next - 1].at
        })
    }

    fn unexpected(&self, t: &Token, expected: &'static str) -> SelectorError {
        SelectorError::Unexpected {
            expected,
            found: t.tok.describe(),
            position: self.pos(t.at),
        }
    }

    /// An error for whatever is next, which is not `expected`.
    fn expected(&self, expected: &'static str) -> SelectorError {
        match self.peek_token() {
            Some(t) => self.unexpected(t, expected),
            None => SelectorError::UnexpectedEnd { expected },
        }
    }

    fn expect(&mut self, tok: Tok, expected: &'static str) -> Result<(), SelectorError> {
        if self.peek() == Some(&tok) {
            self.next += 1;
            Ok(())
        } else {
            Err(self.expected(expected))
        }
    }

    /// A new node over children nesting `depth` deep, within the limits.
    fn node(
        &mut self,
        expr: Expr,
        kind: Kind,
        depth: usize,
        at: usize,
    ) -> Result<Node, SelectorError> {
        self.terms += 1;
        if self.terms > self.limits.terms_max {
            return Err(SelectorError::TooManyTerms {
                max: self.limits.terms_max,
                position: self.pos(at),
            });
        }
        if depth + 1 > self.limits.depth_max {
            return Err(SelectorError::TooDeep {
                max: self.limits.depth_max,
                position: self.pos(at),
            });
        }
        Ok(Node {
            expr,
            kind,
            depth: depth + 1,
            at,
        })
    }

    fn want(
        &self,
        n: &Node,
        ok: &[Kind],
        operator: &'static str,
        expected: &'static str,
        at: usize,
    ) -> Result<(), SelectorError> {
        if n.kind == Kind::Any || ok.contains(&n.kind) {
            Ok(())
        } else {
            Err(SelectorError::WrongOperand {
                operator,
                expected,
                found: n.kind.describe(),
                position: self.pos(at),
            })
        }
    }

    fn want_condition(
        &self,
        n: &Node,
        operator: &'static str,
        at: usize,
    ) -> Result<(), SelectorError> {
        self.want(n, &[Kind::Bool], operator, "conditions", at)
    }

    fn want_number(
        &self,
        n: &Node,
        operator: &'static str,
        at: usize,
    ) -> Result<(), SelectorError> {
        self.want(n, &[Kind::Num], operator, "numbers", at)
    }

    fn or(&mut self) -> Result<Node, SelectorError> {
        self.logic(Kw::Or)
    }

    /// `a OR b OR ...` (or AND): one n-ary node, nested ones flattened, so
    /// a long chain costs no depth.
    fn logic(&mut self, kw: Kw) -> Result<Node, SelectorError> {
        let operand = |p: &mut Parser| {
            if kw == Kw::Or {
                p.logic(Kw::And)
            } else {
                p.not()
            }
        };
        let first = operand(self)?;
        if !self.at_kw(kw) {
            return Ok(first);
        }
        let start = first.at;
        let (mut terms, mut depth) = (Vec::new(), 0);
        let mut add = |p: &Parser, n: Node, at: usize| -> Result<(), SelectorError> {
            p.want_condition(&n, kw.name(), at)?;
            depth = depth.max(n.depth);
            match n.expr {
                Expr::Or(inner) if kw == Kw::Or => terms.extend(inner),
                Expr::And(inner) if kw == Kw::And => terms.extend(inner),
                e => terms.push(e),
            }
            Ok(())
        };
        let first_at = self.here();
        add(self, first, first_at)?;
        while let Some(at) = self.eat_kw(kw) {
            let n = operand(self)?;
            add(self, n, at)?;
        }
        let expr = if kw == Kw::Or {
            Expr::Or(terms)
        } else {
            Expr::And(terms)
        };
        self.node(expr, Kind::Bool, depth, start)
    }

    fn not(&mut self) -> Result<Node, SelectorError> {
        // A loop, not recursion, so `NOT NOT NOT ...` cannot run the stack out.
        let mut nots = Vec::new();
        while let Some(at) = self.eat_kw(Kw::Not) {
            nots.push(at);
            if nots.len() > self.limits.depth_max {
                return Err(SelectorError::TooDeep {
                    max: self.limits.depth_max,
                    position: self.pos(at),
                });
            }
        }
        let mut n = self.comparison()?;
        for at in nots.into_iter().rev() {
            self.want_condition(&n, "NOT", at)?;
            n = self.node(Expr::Not(Box::new(n.expr)), Kind::Bool, n.depth, at)?;
        }
        Ok(n)
    }

    fn comparison(&mut self) -> Result<Node, SelectorError> {
        let mut left = self.additive()?;
        loop {
            let at = self.here();
            let negated = matches!(self.peek(), Some(Tok::Kw(Kw::Not)))
                && matches!(
                    self.toks.get(self.next + 1).map(|t| &t.tok),
                    Some(Tok::Kw(Kw::Between | Kw::Like | Kw::In))
                );
            if negated {
                self.next += 1;
            }
            let op = match self.peek() {
                Some(Tok::Eq) if !negated => CmpOp::Eq,
                Some(Tok::Ne) if !negated => CmpOp::Ne,
                Some(Tok::Lt) if !negated => CmpOp::Lt,
                Some(Tok::Le) if !negated => CmpOp::Le,
                Some(Tok::Gt) if !negated => CmpOp::Gt,
                Some(Tok::Ge) if !negated => CmpOp::Ge,
                Some(Tok::Kw(Kw::Between)) => {
                    left = self.between(left, negated, at)?;
                    continue;
                }
                Some(Tok::Kw(Kw::Like)) => {
                    left = self.like(left, negated, at)?;
                    continue;
                }
                Some(Tok::Kw(Kw::In)) => {
                    left = self.in_list(left, negated, at)?;
                    continue;
                }
                Some(Tok::Kw(Kw::Is)) if !negated => {
                    left = self.is_null(left)?;
                    continue;
                }
                _ => return Ok(left),
            };
            self.next += 1;
            let right = self.additive()?;
            let name = match op {
                CmpOp::Eq => "'='",
                CmpOp::Ne => "'<>'",
                CmpOp::Lt => "'<'",
                CmpOp::Le => "'<='",
                CmpOp::Gt => "'>'",
                CmpOp::Ge => "'>='",
            };
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                // Like types only (the spec's grammar has a rule per type).
                if left.kind != Kind::Any && right.kind != Kind::Any && left.kind != right.kind {
                    return Err(SelectorError::Incomparable {
                        operator: name,
                        left: left.kind.describe(),
                        right: right.kind.describe(),
                        position: self.pos(at),
                    });
                }
            } else {
                self.want(
                    &left,
                    &[Kind::Num],
                    name,
                    "numbers (strings and booleans allow only = and <>)",
                    at,
                )?;
                self.want(
                    &right,
                    &[Kind::Num],
                    name,
                    "numbers (strings and booleans allow only = and <>)",
                    at,
                )?;
            }
            let depth = left.depth.max(right.depth);
            let expr = Expr::Cmp(op, Box::new(left.expr), Box::new(right.expr));
            left = self.node(expr, Kind::Bool, depth, left.at)?;
        }
    }

    fn between(&mut self, value: Node, negated: bool, at: usize) -> Result<Node, SelectorError> {
        self.next += 1;
        let low = self.additive()?;
        self.expect(Tok::Kw(Kw::And), "AND")?;
        let high = self.additive()?;
        for n in [&value, &low, &high] {
            self.want_number(n, "BETWEEN", at)?;
        }
        let depth = value.depth.max(low.depth).max(high.depth);
        let expr = Expr::Between {
            negated,
            value: Box::new(value.expr),
            low: Box::new(low.expr),
            high: Box::new(high.expr),
        };
        self.node(expr, Kind::Bool, depth, value.at)
    }

    fn like(&mut self, value: Node, negated: bool, at: usize) -> Result<Node, SelectorError> {
        self.next += 1;
        self.want(&value, &[Kind::Str], "LIKE", "a string", at)?;
        let Some(Tok::Str(pattern)) = self.peek().cloned() else {
            return Err(self.expected("a string literal pattern"));
        };
        self.next += 1;
        let mut escape = None;
        if let Some(esc_at) = self.eat_kw(Kw::Escape) {
            let Some(Tok::Str(e)) = self.peek().cloned() else {
                return Err(self.expected("a string literal escape character"));
            };
            self.next += 1;
            let mut chars = e.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => escape = Some(c),
                _ => {
                    return Err(SelectorError::InvalidEscape {
                        found: e,
                        position: self.pos(esc_at),
                    })
                }
            }
        }
        let expr = Expr::Like {
            negated,
            value: Box::new(value.expr),
            pattern: LikePattern::new(&pattern, escape),
        };
        self.node(expr, Kind::Bool, value.depth, value.at)
    }

    fn in_list(&mut self, value: Node, negated: bool, at: usize) -> Result<Node, SelectorError> {
        self.next += 1;
        let Expr::Field(field) = value.expr else {
            return Err(SelectorError::InNeedsProperty {
                position: self.pos(at),
            });
        };
        self.expect(Tok::LParen, "'(' opening the IN list")?;
        let mut list: Vec<Box<str>> = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Str(s)) => list.push(s.as_str().into()),
                _ => return Err(self.expected("a string literal (IN lists hold strings only)")),
            }
            self.next += 1;
            match self.peek() {
                Some(Tok::Comma) => self.next += 1,
                Some(Tok::RParen) => {
                    self.next += 1;
                    break;
                }
                _ => return Err(self.expected("',' or ')' in the IN list")),
            }
        }
        list.sort_unstable();
        list.dedup();
        let expr = Expr::In {
            negated,
            field,
            list,
        };
        self.node(expr, Kind::Bool, value.depth, value.at)
    }

    fn is_null(&mut self, value: Node) -> Result<Node, SelectorError> {
        self.next += 1;
        let negated = self.eat_kw(Kw::Not).is_some();
        self.expect(Tok::Kw(Kw::Null), "NULL")?;
        let expr = Expr::IsNull {
            negated,
            value: Box::new(value.expr),
        };
        self.node(expr, Kind::Bool, value.depth, value.at)
    }

    /// `a + b - c ...` and, one level tighter, `a * b / c % d ...`.
    fn additive(&mut self) -> Result<Node, SelectorError> {
        self.arithmetic(true)
    }

    fn arithmetic(&mut self, additive: bool) -> Result<Node, SelectorError> {
        let operand = |p: &mut Parser| {
            if additive {
                p.arithmetic(false)
            } else {
                p.unary()
            }
        };
        let mut left = operand(self)?;
        loop {
            let op = match (additive, self.peek()) {
                (true, Some(Tok::Plus)) => ArithOp::Add,
                (true, Some(Tok::Minus)) => ArithOp::Sub,
                (false, Some(Tok::Star)) => ArithOp::Mul,
                (false, Some(Tok::Slash)) => ArithOp::Div,
                (false, Some(Tok::Percent)) => ArithOp::Mod,
                _ => return Ok(left),
            };
            let at = self.here();
            self.next += 1;
            let right = operand(self)?;
            let name = match op {
                ArithOp::Add => "'+'",
                ArithOp::Sub => "'-'",
                ArithOp::Mul => "'*'",
                ArithOp::Div => "'/'",
                ArithOp::Mod => "'%'",
            };
            self.want_number(&left, name, at)?;
            self.want_number(&right, name, at)?;
            let depth = left.depth.max(right.depth);
            let expr = Expr::Arith(op, Box::new(left.expr), Box::new(right.expr));
            left = self.node(expr, Kind::Num, depth, left.at)?;
        }
    }

    fn unary(&mut self) -> Result<Node, SelectorError> {
        // Signs are gathered in a loop, not by recursion (see `not`).
        let mut signs = Vec::new();
        while let Some(tok) = self.peek() {
            let negative = match tok {
                Tok::Plus => false,
                Tok::Minus => true,
                _ => break,
            };
            signs.push((negative, self.here()));
            self.next += 1;
            if signs.len() > self.limits.depth_max {
                return Err(SelectorError::TooDeep {
                    max: self.limits.depth_max,
                    position: self.pos(self.here()),
                });
            }
        }
        let Some(&(_, first)) = signs.first() else {
            return self.primary();
        };
        let negative = signs.iter().filter(|(n, _)| *n).count() % 2 == 1;
        // A signed number is one literal: `-9223372036854775808` is in range
        // though its magnitude alone is not.
        match self.peek() {
            Some(&Tok::Int(m)) => {
                let at = self.here();
                self.next += 1;
                let value = if negative {
                    0i64.checked_sub_unsigned(m)
                } else {
                    i64::try_from(m).ok()
                };
                let Some(n) = value else {
                    return Err(SelectorError::NumberOutOfRange {
                        text: format!("{}{m}", if negative { "-" } else { "" }),
                        position: self.pos(at),
                    });
                };
                return self.node(Expr::Lit(Lit::Int(n)), Kind::Num, 0, first);
            }
            Some(&Tok::Float(x)) => {
                self.next += 1;
                let x = if negative { -x } else { x };
                return self.node(Expr::Lit(Lit::Float(x)), Kind::Num, 0, first);
            }
            _ => {}
        }
        let mut n = self.primary()?;
        for (negative, at) in signs.into_iter().rev() {
            self.want_number(&n, if negative { "'-'" } else { "'+'" }, at)?;
            if !negative {
                continue;
            }
            let expr = match n.expr {
                Expr::Lit(Lit::Float(x)) => Expr::Lit(Lit::Float(-x)),
                Expr::Lit(Lit::Int(i)) if i != i64::MIN => Expr::Lit(Lit::Int(-i)),
                e => Expr::Neg(Box::new(e)),
            };
            n = self.node(expr, Kind::Num, n.depth, at)?;
        }
        Ok(n)
    }

    fn primary(&mut self) -> Result<Node, SelectorError> {
        let Some(t) = self.peek_token().cloned() else {
            return Err(SelectorError::UnexpectedEnd {
                expected: "an expression",
            });
        };
        self.next += 1;
        let (expr, kind) = match t.tok {
            Tok::Int(m) => match i64::try_from(m) {
                Ok(n) => (Expr::Lit(Lit::Int(n)), Kind::Num),
                Err(_) => {
                    return Err(SelectorError::NumberOutOfRange {
                        text: m.to_string(),
                        position: self.pos(t.at),
                    })
                }
            },
            Tok::Float(x) => (Expr::Lit(Lit::Float(x)), Kind::Num),
            Tok::Str(s) => (Expr::Lit(Lit::Str(s.into())), Kind::Str),
            Tok::Kw(Kw::True) => (Expr::Lit(Lit::Bool(true)), Kind::Bool),
            Tok::Kw(Kw::False) => (Expr::Lit(Lit::Bool(false)), Kind::Bool),
            Tok::Kw(Kw::Null) => {
                return Err(SelectorError::NullLiteral {
                    position: self.pos(t.at),
                })
            }
            Tok::Ident(name) => (Expr::Field(Field::resolve(&name)), Kind::Any),
            Tok::LParen => {
                self.nesting += 1;
                if self.nesting > self.limits.depth_max {
                    return Err(SelectorError::TooDeep {
                        max: self.limits.depth_max,
                        position: self.pos(t.at),
                    });
                }
                let mut inner = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                self.nesting -= 1;
                inner.at = t.at;
                return Ok(inner);
            }
            _ => {
                self.next -= 1;
                return Err(self.unexpected(&t, "an expression"));
            }
        };
        self.node(expr, kind, 0, t.at)
    }
}
