//! JSON values that refuse duplicate keys.
//!
//! RFC 8259 leaves the meaning of an object with a repeated name open, and parsers differ:
//! serde_json keeps the last, others the first. A body that two components read
//! differently is a way around a check (one validates the first `amount`, another
//! aggregates the second), so what Tributary reads from clients is parsed with
//! [`StrictValue`], which fails on the second occurrence of a key in one object and says
//! which key it was.
//!
//! Contract: [`StrictValue`] yields exactly the [`Value`] that `serde_json` would, for any
//! document without a repeated key in any of its objects (at any depth); for one with, it
//! fails with a `serde_json` error positioned just after the repeated key, and records the
//! key in its [`DuplicateKeys`].

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Where a [`StrictValue`] records the repeated key it failed on.
#[derive(Debug, Default)]
pub struct DuplicateKeys {
    found: RefCell<Option<String>>,
}

impl DuplicateKeys {
    /// A recorder with no key yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The repeated key a parse failed on, if that is why it failed; clears it.
    pub fn take(&self) -> Option<String> {
        self.found.borrow_mut().take()
    }
}

/// A [`DeserializeSeed`] for a [`Value`] that fails on a repeated key.
#[derive(Debug, Clone, Copy)]
pub struct StrictValue<'a> {
    /// Where the repeated key is recorded.
    pub duplicates: &'a DuplicateKeys,
}

/// Why [`from_slice`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    /// An object holds a key twice.
    #[error("duplicate key {key:?} at line {line}, column {column}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// 1-based line of the position just after the second occurrence.
        line: usize,
        /// 1-based column of that position.
        column: usize,
    },
    /// Not well-formed JSON (or nested deeper than `serde_json` reads, 128 levels).
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
}

/// Parses one JSON document, refusing duplicate keys.
///
/// # Errors
/// See [`StrictError`].
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictError> {
    let duplicates = DuplicateKeys::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    StrictValue {
        duplicates: &duplicates,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value))
    .map_err(|err| classify(err, &duplicates))
}

/// The [`StrictError`] of `err`, a failure of a parse with [`StrictValue`] over
/// `duplicates`.
#[must_use]
pub fn classify(err: serde_json::Error, duplicates: &DuplicateKeys) -> StrictError {
    match duplicates.take() {
        Some(key) => StrictError::DuplicateKey {
            key,
            line: err.line(),
            column: err.column(),
        },
        None => StrictError::Malformed(err),
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let message = format!("duplicate key {key:?}");
                *self.duplicates.found.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":1,"b":[true,null,-2,3.5,"x",{"c":{}}],"d":"\u00e9"}"#,
            "[]",
            "18446744073709551615",
            r#""s""#,
            "null",
        ] {
            let strict = from_slice(text.as_bytes()).unwrap();
            let loose: Value = serde_json::from_str(text).unwrap();
            assert_eq!(strict, loose, "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_at_any_depth() {
        for (text, key, column) in [
            (r#"{"a":1,"a":2}"#, "a", 10),
            (r#"{"p":{"x":1,"y":{"z":0},"x":3}}"#, "x", 27),
            (r#"[{"ok":1},{"k\"q":1,"k\"q":2}]"#, "k\"q", 26),
        ] {
            match from_slice(text.as_bytes()) {
                Err(StrictError::DuplicateKey {
                    key: found,
                    line,
                    column: at,
                }) => {
                    assert_eq!(found, key, "{text}");
                    assert_eq!((line, at), (1, column), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // The same key in two objects is no repetition.
        assert!(from_slice(br#"[{"a":1},{"a":2},{"b":{"a":3}}]"#).is_ok());
    }

    #[test]
    fn malformed_and_trailing_text_are_malformed() {
        for text in ["{", r#"{"a":1} x"#, "[1,]", ""] {
            assert!(
                matches!(from_slice(text.as_bytes()), Err(StrictError::Malformed(_))),
                "{text}"
            );
        }
    }
}
