//! The operators on values, with SQL's `NULL` semantics; the compiler wires them into
//! closures. None of them allocates except those that build a string.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::value::{ColumnType, Value};

/// A double as a value: `NULL` when it is not finite (JSON has no such numbers).
fn finite(x: f64) -> Value<'static> {
    if x.is_finite() {
        Value::Float(x)
    } else {
        Value::Null
    }
}

/// An arithmetic operator: `int` on two integers (`None` is an overflow or a division by
/// zero, so `NULL`), `float` when either side is a double; `NULL` for anything else.
pub(super) fn arithmetic(
    a: &Value<'_>,
    b: &Value<'_>,
    int: impl Fn(i64, i64) -> Option<i64>,
    float: impl Fn(f64, f64) -> Option<f64>,
) -> Value<'static> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return int(*x, *y).map_or(Value::Null, Value::Int);
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => float(x, y).map_or(Value::Null, finite),
        _ => Value::Null,
    }
}

/// `x / y` for doubles; `None` for a division by zero.
#[allow(clippy::float_cmp)]
pub(super) fn divide(x: f64, y: f64) -> Option<f64> {
    (y != 0.0).then(|| x / y)
}

/// `x % y` for doubles; `None` for a division by zero.
#[allow(clippy::float_cmp)]
pub(super) fn remainder(x: f64, y: f64) -> Option<f64> {
    (y != 0.0).then(|| x % y)
}

/// Unary minus.
pub(super) fn negate(v: &Value<'_>) -> Value<'static> {
    match *v {
        Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
        Value::Float(f) => Value::Float(-f),
        _ => Value::Null,
    }
}

/// Unary plus: numbers stay, anything else is `NULL`.
pub(super) fn plus(v: &Value<'_>) -> Value<'static> {
    match *v {
        Value::Int(i) => Value::Int(i),
        Value::Float(f) => Value::Float(f),
        _ => Value::Null,
    }
}

/// `abs()`.
pub(super) fn abs(v: &Value<'_>) -> Value<'static> {
    match *v {
        Value::Int(i) => i.checked_abs().map_or(Value::Null, Value::Int),
        Value::Float(f) => Value::Float(f.abs()),
        _ => Value::Null,
    }
}

/// A comparison: `holds` applied to the order of `a` and `b`, `NULL` when they do not
/// compare (either is `NULL`, or their types differ).
pub(super) fn compare(
    a: &Value<'_>,
    b: &Value<'_>,
    holds: impl Fn(Ordering) -> bool,
) -> Value<'static> {
    a.sql_cmp(b).map_or(Value::Null, |o| Value::Bool(holds(o)))
}

/// `IS DISTINCT FROM`: inequality where `NULL` is a value like any other.
pub(super) fn distinct(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a.is_null(), b.is_null()) {
        (true, true) => false,
        (false, false) => a.sql_cmp(b) != Some(Ordering::Equal),
        _ => true,
    }
}

/// Three-valued `NOT`.
pub(super) fn not(v: &Value<'_>) -> Value<'static> {
    match *v {
        Value::Bool(b) => Value::Bool(!b),
        _ => Value::Null,
    }
}

/// `a || b`: the texts of both, `NULL` when either is `NULL`.
pub(super) fn concat(a: &Value<'_>, b: &Value<'_>) -> Value<'static> {
    if a.is_null() || b.is_null() {
        return Value::Null;
    }
    let mut out = String::new();
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{a}{b}");
    Value::Str(Cow::Owned(out))
}

/// `lower()`: borrows the string when it has no upper-case letter.
pub(super) fn lower(v: Value<'_>) -> Value<'_> {
    match v {
        Value::Str(s) if s.chars().any(|c| !c.to_lowercase().eq([c])) => {
            Value::Str(Cow::Owned(s.to_lowercase()))
        }
        Value::Str(s) => Value::Str(s),
        _ => Value::Null,
    }
}

/// `upper()`: borrows the string when it has no lower-case letter.
pub(super) fn upper(v: Value<'_>) -> Value<'_> {
    match v {
        Value::Str(s) if s.chars().any(|c| !c.to_uppercase().eq([c])) => {
            Value::Str(Cow::Owned(s.to_uppercase()))
        }
        Value::Str(s) => Value::Str(s),
        _ => Value::Null,
    }
}

/// `length()`: the number of characters.
pub(super) fn length(v: Value<'_>) -> Value<'_> {
    match v {
        Value::Str(s) => i64::try_from(s.chars().count()).map_or(Value::Null, Value::Int),
        _ => Value::Null,
    }
}

/// `CAST(v AS <to>)`: `NULL` when the value does not convert (an unparsable string, a
/// double out of the integer range).
///
/// Doubles round to the nearest integer (ties to even, as PostgreSQL does); strings are
/// parsed after trimming white space; booleans read `true`/`false`, `t`/`f`, `yes`/`no`,
/// `on`/`off`, `1`/`0` in any case; integers are true when not zero.
pub(super) fn cast(v: Value<'_>, to: ColumnType) -> Value<'_> {
    match to {
        ColumnType::Int => cast_int(&v),
        ColumnType::Float => cast_float(&v),
        ColumnType::Bool => cast_bool(&v),
        ColumnType::Text => match v {
            Value::Null => Value::Null,
            Value::Str(s) => Value::Str(s),
            v => Value::Str(Cow::Owned(v.to_string())),
        },
    }
}

/// `CAST(v AS BIGINT)`.
#[allow(clippy::cast_possible_truncation)]
fn cast_int(v: &Value<'_>) -> Value<'static> {
    // The doubles strictly between these convert to an `i64` exactly (after rounding).
    const LOW: f64 = -9_223_372_036_854_775_808.0;
    const HIGH: f64 = 9_223_372_036_854_775_808.0;
    match v {
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => {
            let rounded = f.round_ties_even();
            if (LOW..HIGH).contains(&rounded) {
                Value::Int(rounded as i64)
            } else {
                Value::Null
            }
        }
        Value::Bool(b) => Value::Int(i64::from(*b)),
        Value::Str(s) => s.trim().parse().map_or(Value::Null, Value::Int),
        Value::Null => Value::Null,
    }
}

/// `CAST(v AS DOUBLE)`.
fn cast_float(v: &Value<'_>) -> Value<'static> {
    match v {
        Value::Int(_) | Value::Float(_) => v.as_f64().map_or(Value::Null, finite),
        Value::Str(s) => s.trim().parse().map_or(Value::Null, finite),
        Value::Bool(_) | Value::Null => Value::Null,
    }
}

/// `CAST(v AS BOOLEAN)`.
fn cast_bool(v: &Value<'_>) -> Value<'static> {
    const TRUE: [&str; 6] = ["true", "t", "yes", "y", "on", "1"];
    const FALSE: [&str; 6] = ["false", "f", "no", "n", "off", "0"];
    match v {
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Bool(*i != 0),
        Value::Str(s) => {
            let s = s.trim();
            if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
                Value::Bool(true)
            } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
                Value::Bool(false)
            } else {
                Value::Null
            }
        }
        Value::Float(_) | Value::Null => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        let add = |a, b| arithmetic(&a, &b, i64::checked_add, |x, y| Some(x + y));
        assert_eq!(add(Value::Int(2), Value::Int(3)), Value::Int(5));
        assert_eq!(add(Value::Int(i64::MAX), Value::Int(1)), Value::Null);
        assert_eq!(add(Value::Int(2), Value::Float(0.5)), Value::Float(2.5));
        assert_eq!(
            add(Value::Float(f64::MAX), Value::Float(f64::MAX)),
            Value::Null
        );
        assert_eq!(add(Value::Str("2".into()), Value::Int(1)), Value::Null);
        assert_eq!(add(Value::Bool(true), Value::Int(1)), Value::Null);
        let div = |a, b| arithmetic(&a, &b, i64::checked_div, divide);
        assert_eq!(div(Value::Int(7), Value::Int(2)), Value::Int(3));
        assert_eq!(div(Value::Int(7), Value::Int(0)), Value::Null);
        assert_eq!(div(Value::Int(i64::MIN), Value::Int(-1)), Value::Null);
        assert_eq!(div(Value::Float(7.0), Value::Int(0)), Value::Null);
        assert_eq!(negate(&Value::Int(i64::MIN)), Value::Null);
        assert_eq!(abs(&Value::Float(-1.5)), Value::Float(1.5));
    }

    #[test]
    fn casts_convert_or_give_null() {
        let int = |v| cast(v, ColumnType::Int);
        assert_eq!(int(Value::Str(" 42 ".into())), Value::Int(42));
        assert_eq!(int(Value::Str("4.2".into())), Value::Null);
        assert_eq!(int(Value::Float(2.5)), Value::Int(2));
        assert_eq!(int(Value::Float(3.5)), Value::Int(4));
        assert_eq!(int(Value::Float(-2.7)), Value::Int(-3));
        assert_eq!(int(Value::Float(1e19)), Value::Null);
        assert_eq!(
            int(Value::Float(-9_223_372_036_854_775_808.0)),
            Value::Int(i64::MIN)
        );
        assert_eq!(int(Value::Bool(true)), Value::Int(1));
        let float = |v| cast(v, ColumnType::Float);
        assert_eq!(float(Value::Str("1e3".into())), Value::Float(1000.0));
        assert_eq!(float(Value::Str("NaN".into())), Value::Null);
        assert_eq!(float(Value::Str("x".into())), Value::Null);
        assert_eq!(float(Value::Int(3)), Value::Float(3.0));
        let boolean = |v| cast(v, ColumnType::Bool);
        assert_eq!(boolean(Value::Str("Yes".into())), Value::Bool(true));
        assert_eq!(boolean(Value::Str("0".into())), Value::Bool(false));
        assert_eq!(boolean(Value::Str("maybe".into())), Value::Null);
        assert_eq!(boolean(Value::Int(2)), Value::Bool(true));
        let text = |v| cast(v, ColumnType::Text);
        assert_eq!(text(Value::Float(1.5)), Value::Str("1.5".into()));
        assert_eq!(text(Value::Bool(false)), Value::Str("false".into()));
        assert!(matches!(
            text(Value::Str("x".into())),
            Value::Str(Cow::Borrowed("x"))
        ));
        assert_eq!(text(Value::Null), Value::Null);
    }

    #[test]
    fn case_mapping_borrows_when_nothing_changes() {
        assert!(matches!(
            lower(Value::Str("abc-1".into())),
            Value::Str(Cow::Borrowed("abc-1"))
        ));
        assert_eq!(lower(Value::Str("ÀbC".into())), Value::Str("àbc".into()));
        assert_eq!(
            upper(Value::Str("straße".into())),
            Value::Str("STRASSE".into())
        );
        assert_eq!(lower(Value::Int(1)), Value::Null);
        assert_eq!(length(Value::Str("日本".into())), Value::Int(2));
    }
}
