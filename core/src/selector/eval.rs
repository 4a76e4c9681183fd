//! Evaluating an [`Expr`] against a message, in SQL's three-valued logic.
//!
//! NULL (a missing property) makes comparisons, arithmetic, LIKE, IN and
//! BETWEEN Unknown. Values of unlike types compare False, as the spec says
//! ("if the comparison of non-like type values is attempted, the value of
//! the operation is false"), except `<>`, which is NOT `=` and so True, as
//! in Artemis. Integers of every width compare as longs, floats as doubles,
//! and a long with a double as doubles (Java's numeric promotion).

use std::borrow::Cow;

use crate::message::Message;

use super::ast::{ArithOp, CmpOp, Expr, Lit};
use super::value::{Truth, Val};

/// What an evaluation reads besides the expression.
pub(super) struct Context<'m> {
    pub(super) message: &'m Message,
    pub(super) delivery_count: u32,
}

/// `e` where a condition is expected.
pub(super) fn truth<'a>(e: &'a Expr, cx: &Context<'a>) -> Truth {
    match e {
        Expr::Or(terms) => {
            let mut acc = Truth::False;
            for t in terms {
                acc = acc.or(truth(t, cx));
                if acc == Truth::True {
                    break;
                }
            }
            acc
        }
        Expr::And(terms) => {
            let mut acc = Truth::True;
            for t in terms {
                acc = acc.and(truth(t, cx));
                if acc == Truth::False {
                    break;
                }
            }
            acc
        }
        Expr::Not(e) => !truth(e, cx),
        Expr::Cmp(op, l, r) => compare(*op, &value(l, cx), &value(r, cx)),
        Expr::Between {
            negated,
            value: v,
            low,
            high,
        } => {
            let v = value(v, cx);
            if v == Val::Null {
                return Truth::Unknown;
            }
            let (low, high) = (value(low, cx), value(high, cx));
            // The spec's definitions: `v >= low AND v <= high`, and
            // `v < low OR v > high` for NOT BETWEEN.
            if *negated {
                compare(CmpOp::Lt, &v, &low).or(compare(CmpOp::Gt, &v, &high))
            } else {
                compare(CmpOp::Ge, &v, &low).and(compare(CmpOp::Le, &v, &high))
            }
        }
        Expr::Like {
            negated,
            value: v,
            pattern,
        } => {
            let t = match value(v, cx) {
                Val::Null => Truth::Unknown,
                Val::Str(s) => Truth::from_bool(pattern.matches(&s)),
                // Artemis: LIKE on a non-string is False (so NOT LIKE is True).
                _ => Truth::False,
            };
            if *negated {
                !t
            } else {
                t
            }
        }
        Expr::In {
            negated,
            field,
            list,
        } => match field.read(cx.message, cx.delivery_count) {
            Val::Str(s) => {
                Truth::from_bool(list.binary_search_by(|x| (**x).cmp(&*s)).is_ok() != *negated)
            }
            // IN is defined on strings only; Artemis answers Unknown for
            // any other type, in both IN and NOT IN.
            _ => Truth::Unknown,
        },
        Expr::IsNull { negated, value: v } => {
            Truth::from_bool((value(v, cx) == Val::Null) != *negated)
        }
        Expr::Lit(_) | Expr::Field(_) | Expr::Neg(_) | Expr::Arith(..) => value(e, cx).truth(),
    }
}

/// `e`'s value; a condition is a boolean, or NULL when Unknown.
pub(super) fn value<'a>(e: &'a Expr, cx: &Context<'a>) -> Val<'a> {
    match e {
        Expr::Lit(Lit::Bool(b)) => Val::Bool(*b),
        Expr::Lit(Lit::Int(n)) => Val::Int(*n),
        Expr::Lit(Lit::Float(x)) => Val::Float(*x),
        Expr::Lit(Lit::Str(s)) => Val::Str(Cow::Borrowed(s)),
        Expr::Field(f) => f.read(cx.message, cx.delivery_count),
        Expr::Neg(e) => match value(e, cx) {
            Val::Int(n) => n.checked_neg().map_or(Val::Float(-(n as f64)), Val::Int),
            Val::Float(x) => Val::Float(-x),
            _ => Val::Null,
        },
        Expr::Arith(op, l, r) => arithmetic(*op, &value(l, cx), &value(r, cx)),
        _ => match truth(e, cx) {
            Truth::True => Val::Bool(true),
            Truth::False => Val::Bool(false),
            Truth::Unknown => Val::Null,
        },
    }
}

fn as_f64(v: &Val) -> Option<f64> {
    match v {
        Val::Int(n) => Some(*n as f64),
        Val::Float(x) => Some(*x),
        _ => None,
    }
}

pub(super) fn compare(op: CmpOp, l: &Val, r: &Val) -> Truth {
    let equality_only = |eq: bool| match op {
        CmpOp::Eq => Truth::from_bool(eq),
        CmpOp::Ne => Truth::from_bool(!eq),
        // Strings and booleans are ordered by nothing.
        _ => Truth::False,
    };
    match (l, r) {
        (Val::Null, _) | (_, Val::Null) => Truth::Unknown,
        (Val::Int(a), Val::Int(b)) => Truth::from_bool(op.holds(a.cmp(b))),
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
            let (a, b) = (as_f64(l).unwrap_or(f64::NAN), as_f64(r).unwrap_or(f64::NAN));
            match a.partial_cmp(&b) {
                Some(ord) => Truth::from_bool(op.holds(ord)),
                // NaN: unordered, and unequal to everything.
                None => Truth::from_bool(op == CmpOp::Ne),
            }
        }
        (Val::Str(a), Val::Str(b)) => equality_only(a == b),
        (Val::Bool(a), Val::Bool(b)) => equality_only(a == b),
        (Val::Other(a), Val::Other(b)) => equality_only(a == b),
        _ => equality_only(false),
    }
}

/// `l op r`; NULL when either is NULL or not a number. Longs stay longs
/// (division truncates, as in Java) unless the result overflows, which
/// yields the nearest double rather than Java's wrapped value; division or
/// remainder by a long zero, which would throw in Java, is NULL.
pub(super) fn arithmetic(op: ArithOp, l: &Val, r: &Val) -> Val<'static> {
    if let (Val::Int(a), Val::Int(b)) = (l, r) {
        let (a, b) = (*a, *b);
        let exact = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div | ArithOp::Mod if b == 0 => return Val::Null,
            ArithOp::Div => a.checked_div(b),
            // Only `MIN % -1` overflows, and its remainder is 0.
            ArithOp::Mod => Some(a.wrapping_rem(b)),
        };
        if let Some(n) = exact {
            return Val::Int(n);
        }
    }
    let (Some(a), Some(b)) = (as_f64(l), as_f64(r)) else {
        return Val::Null;
    };
    Val::Float(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
        ArithOp::Mod => a % b,
    })
}
