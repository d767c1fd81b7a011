//! A stream's JSON Schema, compiled once, applied to its events' payloads.
//!
//! Contract:
//! - [`StreamSchema::compile`] accepts a JSON Schema document (any draft the `jsonschema`
//!   crate knows, detected from `$schema`, 2020-12 by default) and refuses an invalid one
//!   with the reason. No `$ref` is fetched from the network or the file system (the
//!   crate's resolvers are not built): a schema referring outside itself is refused.
//! - [`StreamSchema::check`] applies the schema to an event's `payload` (not to the whole
//!   event, whose envelope `id`, `ts`, `key` Tributary checks itself) and returns every
//!   violation as `"{path}: {reason}"`, where `path` is the JSON pointer of the failing
//!   value from the event's root (`/payload/temperature`), at most [`MAX_VIOLATIONS`] of
//!   them, each at most [`MAX_VIOLATION_BYTES`] long (values quoted in reasons can be
//!   large).

use serde_json::Value;

/// The most violations reported for one event.
pub const MAX_VIOLATIONS: usize = 10;

/// The longest reported violation, in bytes: that of any reason an invalid event is
/// refused with.
pub const MAX_VIOLATION_BYTES: usize = tributary_core::parse::MAX_REASON_BYTES;

/// A compiled JSON Schema of a stream's payloads.
#[derive(Debug)]
pub struct StreamSchema {
    document: Value,
    validator: jsonschema::Validator,
}

/// Why a schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON Schema: {0}")]
pub struct InvalidSchema(pub String);

impl StreamSchema {
    /// Compiles `document`.
    ///
    /// # Errors
    /// When `document` is not a valid JSON Schema (or refers to another document).
    pub fn compile(document: Value) -> Result<Self, InvalidSchema> {
        if !matches!(document, Value::Object(_) | Value::Bool(_)) {
            return Err(InvalidSchema(
                "a schema is a JSON object (or a boolean)".to_owned(),
            ));
        }
        let validator = jsonschema::validator_for(&document).map_err(|error| {
            let path = error.instance_path().to_string();
            let reason = cut(error.to_string());
            InvalidSchema(if path.is_empty() {
                reason
            } else {
                format!("{path}: {reason}")
            })
        })?;
        Ok(Self {
            document,
            validator,
        })
    }

    /// The schema as given.
    #[must_use]
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The violations of an event's `payload`, empty when it matches.
    #[must_use]
    pub fn check_payload(&self, payload: &serde_json::Map<String, Value>) -> Vec<String> {
        // The validator reads a `Value`; most payloads are small objects.
        self.check(&Value::Object(payload.clone()))
    }

    /// The violations of `payload`, empty when it matches.
    #[must_use]
    pub fn check(&self, payload: &Value) -> Vec<String> {
        self.validator
            .iter_errors(payload)
            .take(MAX_VIOLATIONS)
            .map(|error| cut(format!("/payload{}: {error}", error.instance_path())))
            .collect()
    }
}

/// `text` cut to at most [`MAX_VIOLATION_BYTES`], on a character boundary, marked with `…`.
fn cut(mut text: String) -> String {
    if text.len() > MAX_VIOLATION_BYTES {
        let mut end = MAX_VIOLATION_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> StreamSchema {
        StreamSchema::compile(json!({
            "type": "object",
            "required": ["temperature"],
            "properties": {
                "temperature": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn violations_name_the_path_from_the_event_and_the_reason() {
        let schema = schema();
        assert!(schema.check(&json!({"temperature": 21.5})).is_empty());
        assert_eq!(
            schema.check(&json!({"temperature": "abc"})),
            [r#"/payload/temperature: "abc" is not of type "number""#]
        );
        let nested = schema.check(&json!({"temperature": 1, "tags": ["a", 2]}));
        assert_eq!(nested.len(), 1);
        assert!(
            nested[0].starts_with("/payload/tags/1: 2 is not of type"),
            "{nested:?}"
        );
        let missing = schema.check(&json!({}));
        assert!(missing[0].starts_with("/payload: "), "{missing:?}");
        assert!(missing[0].contains("temperature"), "{missing:?}");
    }

    #[test]
    fn reports_are_bounded() {
        let schema = StreamSchema::compile(json!({"items": {"type": "number"}})).unwrap();
        let many = Value::Array(vec![json!("x".repeat(5000)); 50]);
        let violations = schema.check(&many);
        assert_eq!(violations.len(), MAX_VIOLATIONS);
        assert!(violations.iter().all(|v| v.len() <= MAX_VIOLATION_BYTES));
        assert!(violations[0].ends_with('…'));
    }

    #[test]
    fn invalid_schemas_are_refused_with_a_reason() {
        for bad in [
            json!({"type": "invalid_type"}),
            json!({"minimum": "three"}),
            json!({"$ref": "https://example.com/schema.json"}),
            json!("a string"),
            json!(3),
        ] {
            let error = StreamSchema::compile(bad.clone()).unwrap_err();
            assert!(!error.0.is_empty(), "{bad}");
        }
        assert!(StreamSchema::compile(json!(true)).is_ok());
    }
}
