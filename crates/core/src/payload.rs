//! What a payload may hold: the subset of JSON that every document store Tributary
//! writes to (MongoDB, FerretDB, SQLite) stores and gives back unchanged.
//!
//! Ingestion refuses anything else with a 422 naming the path. Together with the other
//! checks of ingestion (the event time's range and the whole event's size, in
//! [`crate::parse`], with their limits in [`crate::event`]), this makes the embedded and the
//! distributed modes accept exactly the same events, and an accepted event is never refused
//! later by a store (which would stall the pipeline behind it).
//!
//! The rules: field names contain no `.`, do not start with `$` and contain no NUL;
//! strings contain no NUL; an array does not directly contain an array; integers fit in
//! a signed 64-bit integer.

use serde_json::{Map, Number, Value};

/// A value a payload may not hold, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PayloadError {
    /// Where the value is, e.g. `items[2].name`.
    pub path: String,
    /// Why it is refused.
    pub reason: &'static str,
}

impl PayloadError {
    fn new(reason: &'static str) -> Self {
        Self {
            path: String::new(),
            reason,
        }
    }

    /// The same error, one level further from the value (`segment` is a field name or
    /// `[index]`).
    #[must_use]
    pub fn within(mut self, segment: &str) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("{segment}{}", self.path)
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }
}

/// Checks a string value (also used for ids and keys).
///
/// # Errors
/// When it contains a NUL character.
pub fn check_text(s: &str) -> Result<(), PayloadError> {
    if s.contains('\0') {
        return Err(PayloadError::new("strings must not contain NUL characters"));
    }
    Ok(())
}

fn check_field_name(name: &str) -> Result<(), PayloadError> {
    if name.contains('.') {
        Err(PayloadError::new("field names must not contain '.'"))
    } else if name.starts_with('$') {
        Err(PayloadError::new("field names must not start with '$'"))
    } else if name.contains('\0') {
        Err(PayloadError::new(
            "field names must not contain NUL characters",
        ))
    } else {
        Ok(())
    }
}

/// Checks a payload object against the rules of this module.
///
/// # Errors
/// The first value that breaks a rule, with its path.
pub fn check_payload(map: &Map<String, Value>) -> Result<(), PayloadError> {
    for (name, value) in map {
        check_field_name(name)
            .and_then(|()| check_value(value, false))
            .map_err(|e| e.within(name))?;
    }
    Ok(())
}

fn check_value(value: &Value, in_array: bool) -> Result<(), PayloadError> {
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(n) => check_number(n),
        Value::String(s) => check_text(s),
        Value::Array(items) => {
            if in_array {
                return Err(PayloadError::new("arrays must not directly contain arrays"));
            }
            for (i, item) in items.iter().enumerate() {
                check_value(item, true).map_err(|e| e.within(&format!("[{i}]")))?;
            }
            Ok(())
        }
        Value::Object(map) => check_payload(map),
    }
}

fn check_number(n: &Number) -> Result<(), PayloadError> {
    if n.is_u64() && n.as_i64().is_none() {
        Err(PayloadError::new("integers must be at most 2^63 - 1"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refused_values_name_their_path() {
        let cases = [
            (
                json!({"a": {"b.c": 1}}),
                "a.b.c",
                "field names must not contain '.'",
            ),
            (
                json!({"$set": 1}),
                "$set",
                "field names must not start with '$'",
            ),
            (
                json!({"a": [1, [2]]}),
                "a[1]",
                "arrays must not directly contain arrays",
            ),
            (
                json!({"a": [{"b": "x\u{0}"}]}),
                "a[0].b",
                "strings must not contain NUL characters",
            ),
            (
                json!({"n": u64::MAX}),
                "n",
                "integers must be at most 2^63 - 1",
            ),
        ];
        for (payload, path, reason) in cases {
            let Value::Object(map) = payload else {
                unreachable!()
            };
            assert_eq!(
                check_payload(&map),
                Err(PayloadError {
                    path: path.to_owned(),
                    reason
                })
            );
        }
    }

    #[test]
    fn ordinary_payloads_pass() {
        let Value::Object(map) = json!({
            "s": "日本語 😀", "i": -5, "big": i64::MAX, "f": 0.1, "t": true, "n": null,
            "a": [1, "x", {"b": [2, 3]}], "o": {"p": {"q": {}}}, "e": [], "": 1
        }) else {
            unreachable!()
        };
        assert_eq!(check_payload(&map), Ok(()));
    }
}
