//! Tokens into an [`Expr`], by operator precedence over the spec's levels
//! (loosest first): OR, AND, NOT, comparison (`=` `<>` `<` `<=` `>` `>=`
//! `[NOT] BETWEEN` `[NOT] LIKE` `[NOT] IN` `IS [NOT] NULL`, all one level),
//! `+ -`, `* / %`, unary `+ -`; left to right within a level.
//!
//! Operators wait on an explicit stack rather than in nested calls, so the
//! parser recurses only into parentheses and BETWEEN's bounds: one frame
//! per level, which [`Limits::depth_max`] bounds.
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

/// An operator waiting for its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Or,
    And,
    Not,
    Cmp(CmpOp),
    Arith(ArithOp),
    /// Unary minus.
    Neg,
    /// Unary plus.
    Pos,
}

/// What may follow an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Infix {
    Op(Op),
    /// A comparison-level form that applies at once to the operand before
    /// it and reads its own right-hand parts.
    Post(Post),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Post {
    Between { negated: bool },
    Like { negated: bool },
    In { negated: bool },
    IsNull,
}

/// Precedence levels, loosest first.
const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const CMP: u8 = 4;
const ADD: u8 = 5;
const MUL: u8 = 6;
const UNARY: u8 = 7;

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Or => OR,
            Op::And => AND,
            Op::Not => NOT,
            Op::Cmp(_) => CMP,
            Op::Arith(ArithOp::Add | ArithOp::Sub) => ADD,
            Op::Arith(_) => MUL,
            Op::Neg | Op::Pos => UNARY,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Or => "OR",
            Op::And => "AND",
            Op::Not => "NOT",
            Op::Cmp(CmpOp::Eq) => "'='",
            Op::Cmp(CmpOp::Ne) => "'<>'",
            Op::Cmp(CmpOp::Lt) => "'<'",
            Op::Cmp(CmpOp::Le) => "'<='",
            Op::Cmp(CmpOp::Gt) => "'>'",
            Op::Cmp(CmpOp::Ge) => "'>='",
            Op::Arith(ArithOp::Add) | Op::Pos => "'+'",
            Op::Arith(ArithOp::Sub) | Op::Neg => "'-'",
            Op::Arith(ArithOp::Mul) => "'*'",
            Op::Arith(ArithOp::Div) => "'/'",
            Op::Arith(ArithOp::Mod) => "'%'",
        }
    }
}

impl Infix {
    fn precedence(self) -> u8 {
        match self {
            Infix::Op(op) => op.precedence(),
            Infix::Post(_) => CMP,
        }
    }
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
    let node = p.expr(0)?;
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

    /// An expression of operators binding at least as tightly as `min`:
    /// operands and operators are pushed, and an operator is applied when
    /// one that binds no tighter arrives (all are left-associative).
    fn expr(&mut self, min: u8) -> Result<Node, SelectorError> {
        let mut operands: Vec<Node> = Vec::new();
        let mut ops: Vec<(Op, usize)> = Vec::new();
        loop {
            // Where an operand is due: prefixes, then the operand.
            let mut signs = 0;
            while let Some(op) = match self.peek() {
                Some(Tok::Kw(Kw::Not)) => Some(Op::Not),
                Some(Tok::Minus) => Some(Op::Neg),
                Some(Tok::Plus) => Some(Op::Pos),
                _ => None,
            } {
                if op.precedence() < min {
                    break;
                }
                signs = if op == Op::Not { 0 } else { signs + 1 };
                let at = self.here();
                self.next += 1;
                self.push(&mut ops, op, at)?;
            }
            let operand = self.operand(&mut ops, signs)?;
            operands.push(operand);
            // Where an operator may follow.
            loop {
                let Some(infix) = self.peek_infix().filter(|i| i.precedence() >= min) else {
                    while !ops.is_empty() {
                        self.reduce(&mut operands, &mut ops)?;
                    }
                    return Ok(operands
                        .pop()
                        .expect("an operand per reduced operator, plus one"));
                };
                while ops
                    .last()
                    .is_some_and(|(op, _)| op.precedence() >= infix.precedence())
                {
                    self.reduce(&mut operands, &mut ops)?;
                }
                let at = self.here();
                let op = match infix {
                    Infix::Op(op) => op,
                    Infix::Post(post) => {
                        let value = operands.pop().expect("an operand precedes an operator");
                        let node = self.postfix(post, value, at)?;
                        operands.push(node);
                        continue;
                    }
                };
                self.next += 1;
                self.push(&mut ops, op, at)?;
                break;
            }
        }
    }

    /// Pushes a pending operator. Each pending one will nest over the
    /// next, so a stack deeper than the depth limit fails now.
    fn push(&self, ops: &mut Vec<(Op, usize)>, op: Op, at: usize) -> Result<(), SelectorError> {
        if ops.len() >= self.limits.depth_max {
            return Err(SelectorError::TooDeep {
                max: self.limits.depth_max,
                position: self.pos(at),
            });
        }
        ops.push((op, at));
        Ok(())
    }

    /// What the next token does after an operand, if anything.
    fn peek_infix(&self) -> Option<Infix> {
        let after_not = self.toks.get(self.next + 1).map(|t| &t.tok);
        Some(match self.peek()? {
            Tok::Kw(Kw::Or) => Infix::Op(Op::Or),
            Tok::Kw(Kw::And) => Infix::Op(Op::And),
            Tok::Eq => Infix::Op(Op::Cmp(CmpOp::Eq)),
            Tok::Ne => Infix::Op(Op::Cmp(CmpOp::Ne)),
            Tok::Lt => Infix::Op(Op::Cmp(CmpOp::Lt)),
            Tok::Le => Infix::Op(Op::Cmp(CmpOp::Le)),
            Tok::Gt => Infix::Op(Op::Cmp(CmpOp::Gt)),
            Tok::Ge => Infix::Op(Op::Cmp(CmpOp::Ge)),
            Tok::Plus => Infix::Op(Op::Arith(ArithOp::Add)),
            Tok::Minus => Infix::Op(Op::Arith(ArithOp::Sub)),
            Tok::Star => Infix::Op(Op::Arith(ArithOp::Mul)),
            Tok::Slash => Infix::Op(Op::Arith(ArithOp::Div)),
            Tok::Percent => Infix::Op(Op::Arith(ArithOp::Mod)),
            Tok::Kw(Kw::Between) => Infix::Post(Post::Between { negated: false }),
            Tok::Kw(Kw::Like) => Infix::Post(Post::Like { negated: false }),
            Tok::Kw(Kw::In) => Infix::Post(Post::In { negated: false }),
            Tok::Kw(Kw::Is) => Infix::Post(Post::IsNull),
            Tok::Kw(Kw::Not) => match after_not? {
                Tok::Kw(Kw::Between) => Infix::Post(Post::Between { negated: true }),
                Tok::Kw(Kw::Like) => Infix::Post(Post::Like { negated: true }),
                Tok::Kw(Kw::In) => Infix::Post(Post::In { negated: true }),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn postfix(&mut self, post: Post, value: Node, at: usize) -> Result<Node, SelectorError> {
        let negated = match post {
            Post::Between { negated } | Post::Like { negated } | Post::In { negated } => negated,
            Post::IsNull => false,
        };
        // Past NOT (if any) and the keyword.
        self.next += 1 + usize::from(negated);
        match post {
            Post::Between { .. } => self.between(value, negated, at),
            Post::Like { .. } => self.like(value, negated, at),
            Post::In { .. } => self.in_list(value, negated, at),
            Post::IsNull => self.is_null(value),
        }
    }

    /// Applies the top pending operator to its operands.
    fn reduce(
        &mut self,
        operands: &mut Vec<Node>,
        ops: &mut Vec<(Op, usize)>,
    ) -> Result<(), SelectorError> {
        let (op, at) = ops.pop().expect("reduce has an operator");
        let right = operands.pop().expect("an operator has a right operand");
        let node = match op {
            Op::Not => {
                self.want_condition(&right, "NOT", at)?;
                self.node(Expr::Not(Box::new(right.expr)), Kind::Bool, right.depth, at)?
            }
            Op::Pos => {
                self.want_number(&right, op.name(), at)?;
                Node { at, ..right }
            }
            Op::Neg => {
                self.want_number(&right, op.name(), at)?;
                let expr = match right.expr {
                    Expr::Lit(Lit::Float(x)) => Expr::Lit(Lit::Float(-x)),
                    Expr::Lit(Lit::Int(i)) if i != i64::MIN => Expr::Lit(Lit::Int(-i)),
                    e => Expr::Neg(Box::new(e)),
                };
                self.node(expr, Kind::Num, right.depth, at)?
            }
            Op::Or | Op::And => {
                let left = operands
                    .pop()
                    .expect("a binary operator has a left operand");
                self.want_condition(&left, op.name(), at)?;
                self.want_condition(&right, op.name(), at)?;
                let start = left.at;
                // One n-ary node, nested ones flattened, so a long chain
                // costs no depth.
                let (mut terms, mut depth) = (Vec::new(), 0);
                for n in [left, right] {
                    match n.expr {
                        Expr::Or(inner) if op == Op::Or => {
                            terms.extend(inner);
                            depth = depth.max(n.depth - 1);
                        }
                        Expr::And(inner) if op == Op::And => {
                            terms.extend(inner);
                            depth = depth.max(n.depth - 1);
                        }
                        e => {
                            terms.push(e);
                            depth = depth.max(n.depth);
                        }
                    }
                }
                let expr = if op == Op::Or {
                    Expr::Or(terms)
                } else {
                    Expr::And(terms)
                };
                self.node(expr, Kind::Bool, depth, start)?
            }
            Op::Cmp(cmp) => {
                let left = operands
                    .pop()
                    .expect("a binary operator has a left operand");
                if matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                    // Like types only (the spec's grammar has a rule per type).
                    if left.kind != Kind::Any && right.kind != Kind::Any && left.kind != right.kind
                    {
                        return Err(SelectorError::Incomparable {
                            operator: op.name(),
                            left: left.kind.describe(),
                            right: right.kind.describe(),
                            position: self.pos(at),
                        });
                    }
                } else {
                    let expected = "numbers (strings and booleans allow only = and <>)";
                    self.want(&left, &[Kind::Num], op.name(), expected, at)?;
                    self.want(&right, &[Kind::Num], op.name(), expected, at)?;
                }
                let (start, depth) = (left.at, left.depth.max(right.depth));
                let expr = Expr::Cmp(cmp, Box::new(left.expr), Box::new(right.expr));
                self.node(expr, Kind::Bool, depth, start)?
            }
            Op::Arith(arith) => {
                let left = operands
                    .pop()
                    .expect("a binary operator has a left operand");
                self.want_number(&left, op.name(), at)?;
                self.want_number(&right, op.name(), at)?;
                let (start, depth) = (left.at, left.depth.max(right.depth));
                let expr = Expr::Arith(arith, Box::new(left.expr), Box::new(right.expr));
                self.node(expr, Kind::Num, depth, start)?
            }
        };
        operands.push(node);
        Ok(())
    }

    fn between(&mut self, value: Node, negated: bool, at: usize) -> Result<Node, SelectorError> {
        let low = self.expr(ADD)?;
        self.expect(Tok::Kw(Kw::And), "AND")?;
        let high = self.expr(ADD)?;
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
        let negated = self.eat_kw(Kw::Not).is_some();
        self.expect(Tok::Kw(Kw::Null), "NULL")?;
        let expr = Expr::IsNull {
            negated,
            value: Box::new(value.expr),
        };
        self.node(expr, Kind::Bool, value.depth, value.at)
    }

    /// An operand: a literal, an identifier or a parenthesised expression.
    /// `signs` unary signs just pushed onto `ops` fold into a number that
    /// follows them: `-9223372036854775808` is in range though its
    /// magnitude alone is not.
    fn operand(&mut self, ops: &mut Vec<(Op, usize)>, signs: usize) -> Result<Node, SelectorError> {
        let Some(t) = self.peek_token().cloned() else {
            return Err(SelectorError::UnexpectedEnd {
                expected: "an expression",
            });
        };
        // The signs just pushed, taken back: whether they negate, and where
        // the first stood.
        let take_signs = |ops: &mut Vec<(Op, usize)>| {
            let applied = ops.split_off(ops.len() - signs);
            let negative = applied.iter().filter(|(op, _)| *op == Op::Neg).count() % 2 == 1;
            (negative, applied[0].1)
        };
        match t.tok {
            Tok::Int(m) if signs > 0 => {
                let (negative, first) = take_signs(ops);
                self.next += 1;
                let value = if negative {
                    0i64.checked_sub_unsigned(m)
                } else {
                    i64::try_from(m).ok()
                };
                let Some(n) = value else {
                    return Err(SelectorError::NumberOutOfRange {
                        text: format!("{}{m}", if negative { "-" } else { "" }),
                        position: self.pos(t.at),
                    });
                };
                return self.node(Expr::Lit(Lit::Int(n)), Kind::Num, 0, first);
            }
            Tok::Float(x) if signs > 0 => {
                let (negative, first) = take_signs(ops);
                self.next += 1;
                let x = if negative { -x } else { x };
                return self.node(Expr::Lit(Lit::Float(x)), Kind::Num, 0, first);
            }
            _ => {}
        }
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
                let mut inner = self.expr(0)?;
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
