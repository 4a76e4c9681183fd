//! The parsed expression, and its normalised text.

use std::fmt;

use super::fields::Field;
use super::like::LikePattern;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Lit {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Whether `left op right` holds for operands ordered so.
    pub(super) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }
}

impl ArithOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    Lit(Lit),
    Field(Field),
    Neg(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    Like {
        negated: bool,
        value: Box<Expr>,
        pattern: LikePattern,
    },
    /// The list is sorted and without duplicates, so it is searched by
    /// bisection and printed in a normal order.
    In {
        negated: bool,
        field: Field,
        list: Vec<Box<str>>,
    },
    IsNull {
        negated: bool,
        value: Box<Expr>,
    },
    Not(Box<Expr>),
    /// Two or more terms; nested ANDs are flattened into one.
    And(Vec<Expr>),
    /// Two or more terms; nested ORs are flattened into one.
    Or(Vec<Expr>),
}

/// Precedence levels, loosest first (the spec's order).
const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const CMP: u8 = 4;
const ADD: u8 = 5;
const MUL: u8 = 6;
const UNARY: u8 = 7;
const PRIMARY: u8 = 8;

impl Expr {
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => OR,
            Expr::And(_) => AND,
            Expr::Not(_) => NOT,
            Expr::Cmp(..)
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::In { .. }
            | Expr::IsNull { .. } => CMP,
            Expr::Arith(ArithOp::Add | ArithOp::Sub, ..) => ADD,
            Expr::Arith(..) => MUL,
            Expr::Neg(_) => UNARY,
            // A negative literal prints with its sign, like a negation.
            Expr::Lit(Lit::Int(n)) if *n < 0 => UNARY,
            Expr::Lit(Lit::Float(f)) if f.is_sign_negative() => UNARY,
            Expr::Lit(_) | Expr::Field(_) => PRIMARY,
        }
    }
}

/// `expr`, parenthesised when it binds looser than `min`.
struct Operand<'a>(&'a Expr, u8);

impl fmt::Display for Operand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.precedence() < self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}

fn not(negated: bool) -> &'static str {
    if negated {
        "NOT "
    } else {
        ""
    }
}

/// Keywords in capitals, one space around operators, parentheses only where
/// precedence needs them: parsing the text gives back the same expression.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Lit(Lit::Bool(b)) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Expr::Lit(Lit::Int(n)) => write!(f, "{n}"),
            // Debug prints the shortest text that reads back to the same bits.
            Expr::Lit(Lit::Float(x)) => write!(f, "{x:?}"),
            Expr::Lit(Lit::Str(s)) => quoted(f, s),
            Expr::Field(field) => f.write_str(&field.name),
            // Parenthesised unless plain, so `-(-x)` never prints as a `--` comment.
            Expr::Neg(e) => write!(f, "-{}", Operand(e, PRIMARY)),
            Expr::Arith(op, l, r) => {
                let p = self.precedence();
                write!(f, "{} {} {}", Operand(l, p), op.symbol(), Operand(r, p + 1))
            }
            Expr::Cmp(op, l, r) => {
                write!(f, "{} {} {}", Operand(l, CMP), op.symbol(), Operand(r, ADD))
            }
            Expr::Between {
                negated,
                value,
                low,
                high,
            } => write!(
                f,
                "{} {}BETWEEN {} AND {}",
                Operand(value, CMP),
                not(*negated),
                Operand(low, ADD),
                Operand(high, ADD)
            ),
            Expr::Like {
                negated,
                value,
                pattern,
            } => {
                write!(f, "{} {}LIKE ", Operand(value, CMP), not(*negated))?;
                quoted(f, pattern.source())?;
                if let Some(c) = pattern.escape() {
                    f.write_str(" ESCAPE ")?;
                    quoted(f, c.encode_utf8(&mut [0; 4]))?;
                }
                Ok(())
            }
            Expr::In {
                negated,
                field,
                list,
            } => {
                write!(f, "{} {}IN (", field.name, not(*negated))?;
                for (i, s) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    quoted(f, s)?;
                }
                f.write_str(")")
            }
            Expr::IsNull { negated, value } => {
                write!(f, "{} IS {}NULL", Operand(value, CMP), not(*negated))
            }
            Expr::Not(e) => write!(f, "NOT {}", Operand(e, NOT)),
            Expr::And(terms) | Expr::Or(terms) => {
                let (word, p) = match self {
                    Expr::And(_) => (" AND ", AND + 1),
                    _ => (" OR ", OR + 1),
                };
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    write!(f, "{}", Operand(t, p))?;
                }
                Ok(())
            }
        }
    }
}
