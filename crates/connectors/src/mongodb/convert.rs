//! Event payloads between JSON and BSON, refusing what MongoDB and FerretDB 1.x cannot
//! both store (see the module doc of [`crate::mongodb`]).

use ::mongodb::bson::{Bson, Document, RawArrayBuf, RawBson, RawBsonRef, RawDocumentBuf};
use serde_json::{Map, Number, Value};

/// A value the document store cannot hold, and where it is: the payload rules of
/// `tributary-core`, which ingestion enforces too.
pub(crate) use tributary_core::payload::PayloadError as Unstorable;
pub(crate) use tributary_core::payload::check_text as check_string;

/// A stored value that is not one this store writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected BSON {0} in a stored payload")]
pub(crate) struct Undecodable(pub(crate) String);

/// A JSON object as a BSON document, written straight into its encoded form: no
/// intermediate [`Document`], so a payload costs one buffer, not one allocation per value.
pub(crate) fn object_to_raw(map: &Map<String, Value>) -> Result<RawDocumentBuf, Unstorable> {
    tributary_core::payload::check_payload(map)?;
    Ok(checked_object_to_raw(map))
}

/// A JSON object, already checked, as BSON.
fn checked_object_to_raw(map: &Map<String, Value>) -> RawDocumentBuf {
    let mut document = RawDocumentBuf::new();
    for (name, value) in map {
        // Field names were checked: no NUL, on which `append_ref` would panic.
        match value {
            Value::Null => document.append_ref(name, RawBsonRef::Null),
            Value::Bool(b) => document.append_ref(name, *b),
            Value::Number(n) => document.append_ref(name, number_to_bson(n)),
            Value::String(s) => document.append_ref(name, s.as_str()),
            Value::Array(items) => document.append_ref(name, &array_to_raw(items)),
            Value::Object(map) => document.append_ref(name, &checked_object_to_raw(map)),
        }
    }
    document
}

/// A JSON array, already checked, as BSON.
fn array_to_raw(items: &[Value]) -> RawArrayBuf {
    let mut array = RawArrayBuf::new();
    for item in items {
        match item {
            Value::Null => array.push(RawBson::Null),
            Value::Bool(b) => array.push(*b),
            Value::Number(n) => array.push(number_to_bson(n).to_raw_bson()),
            Value::String(s) => array.push(s.as_str()),
            Value::Array(items) => array.push(array_to_raw(items)),
            Value::Object(map) => array.push(checked_object_to_raw(map)),
        }
    }
    array
}

/// A JSON number as a BSON 64-bit integer or double (checked: no integer beyond i64).
fn number_to_bson(n: &Number) -> RawBsonRef<'static> {
    match n.as_i64() {
        Some(i) => RawBsonRef::Int64(i),
        // serde_json numbers are finite; a u64 beyond i64 was refused by the check.
        None => RawBsonRef::Double(n.as_f64().unwrap_or_default()),
    }
}

/// A stored BSON document as a JSON object.
pub(crate) fn document_to_object(document: Document) -> Result<Map<String, Value>, Undecodable> {
    document
        .into_iter()
        .map(|(name, value)| Ok((name, bson_to_value(value)?)))
        .collect()
}

/// A stored BSON value as JSON.
fn bson_to_value(value: Bson) -> Result<Value, Undecodable> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| Undecodable(format!("double {f}")))?,
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(
            items
                .into_iter()
                .map(bson_to_value)
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(document) => Value::Object(document_to_object(document)?),
        other => return Err(Undecodable(format!("{:?}", other.element_type()))),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn payloads_round_trip() {
        let payload = object(json!({
            "s": "日本語 😀", "i": -5, "big": i64::MAX, "f": 0.1, "one": 1.0, "t": true,
            "n": null, "a": [1, "x", {"b": [2, 3]}], "o": {"p": {"q": {}}}, "e": []
        }));
        let document = object_to_raw(&payload).unwrap().to_document().unwrap();
        assert_eq!(document_to_object(document).unwrap(), payload);
    }

    #[test]
    fn unstorable_values_are_refused_with_their_path() {
        let error = object_to_raw(&object(json!({"a": [{"b.c": 1}]}))).unwrap_err();
        assert_eq!(error.path, "a[0].b.c");
    }

    #[test]
    fn foreign_bson_is_undecodable() {
        let mut document = Document::new();
        document.insert("when", ::mongodb::bson::DateTime::from_millis(0));
        assert!(document_to_object(document).is_err());
    }
}
