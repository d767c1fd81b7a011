//! Values as expressions see them, and the column types of results.
//!
//! A [`Value`] borrows from the event it was read from wherever it can (a payload string is
//! a `Cow::Borrowed`), so evaluating a filter or a key allocates nothing in the common case.
//! SQL semantics: `NULL` is a value of its own, a missing payload field reads as `NULL`, and
//! numbers compare across `Int` and `Float`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// One value: what an expression yields and an accumulator takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// SQL `NULL`: missing, unknown.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double (never NaN when read from JSON).
    Float(f64),
    /// A string, borrowed from the event when possible.
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    /// Whether the value is `NULL`.
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The value as a double, when it is a number.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice, when it is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A value that owns its data.
    #[must_use]
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::Int(i) => Value::Int(i),
            Self::Float(f) => Value::Float(f),
            Self::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        }
    }

    /// A value borrowing from a JSON value: objects and arrays, which expressions do not
    /// look into as values, read as `NULL`, as do numbers that fit neither `i64` nor `f64`.
    #[must_use]
    pub fn from_json(json: &'a serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Self::Int)
                .or_else(|| n.as_f64().map(Self::Float))
                .unwrap_or(Self::Null),
            serde_json::Value::String(s) => Self::Str(Cow::Borrowed(s)),
        }
    }

    /// The value as JSON (`NULL` as `null`; a non-finite double as `null`, which JSON lacks).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Null => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Self::Str(s) => serde_json::Value::String(s.to_string()),
        }
    }

    /// SQL comparison: `None` when either side is `NULL` or the types do not compare
    /// (a string with a number); numbers compare across `Int` and `Float`.
    #[must_use]
    pub fn sql_cmp(&self, other: &Value<'_>) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Self::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Self::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }
}

impl fmt::Display for Value<'_> {
    /// The text form used in result keys: strings as they are, numbers in decimal, `NULL`
    /// as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => Ok(()),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// The type of a result column, as stored in the analytics store's typed tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// `boolean`.
    Bool,
    /// `bigint`.
    Int,
    /// `double precision`.
    Float,
    /// `text`.
    Text,
}

impl ColumnType {
    /// The JSON Schema type name of the column's values (they may also be `null`).
    #[must_use]
    pub fn json_type(self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::Int => "integer",
            Self::Float => "number",
            Self::Text => "string",
        }
    }

    /// `value` converted to this column's type, `NULL` when it does not convert (a string
    /// in a numeric column); text columns take any value's text form.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)]
    pub fn coerce(self, value: Value<'_>) -> Value<'static> {
        match (self, value) {
            (_, Value::Null) => Value::Null,
            (Self::Bool, Value::Bool(b)) => Value::Bool(b),
            (Self::Int, Value::Int(i)) => Value::Int(i),
            (Self::Int, Value::Float(f)) if f.is_finite() && f.fract() == 0.0 => {
                Value::Int(f as i64)
            }
            (Self::Float, v @ (Value::Int(_) | Value::Float(_))) => {
                v.as_f64().map_or(Value::Null, Value::Float)
            }
            (Self::Text, v) => Value::Str(Cow::Owned(v.to_string())),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_borrow_and_compare_as_sql() {
        let json = serde_json::json!({"s": "x", "i": 3, "f": 2.5, "o": {}});
        let s = Value::from_json(&json["s"]);
        assert!(matches!(s, Value::Str(Cow::Borrowed("x"))));
        assert_eq!(Value::from_json(&json["o"]), Value::Null);
        let (i, f) = (Value::from_json(&json["i"]), Value::from_json(&json["f"]));
        assert_eq!(i.sql_cmp(&f), Some(Ordering::Greater));
        assert_eq!(i.sql_cmp(&Value::Null), None);
        assert_eq!(s.sql_cmp(&i), None);
    }

    #[test]
    fn columns_coerce_what_converts() {
        assert_eq!(ColumnType::Float.coerce(Value::Int(2)), Value::Float(2.0));
        assert_eq!(ColumnType::Int.coerce(Value::Float(2.0)), Value::Int(2));
        assert_eq!(ColumnType::Int.coerce(Value::Float(2.5)), Value::Null);
        assert_eq!(
            ColumnType::Text.coerce(Value::Int(7)),
            Value::Str(Cow::Borrowed("7"))
        );
        assert_eq!(ColumnType::Int.coerce(Value::Str("7".into())), Value::Null);
    }
}
