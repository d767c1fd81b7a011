//! Event payloads between JSON and BSON, refusing what MongoDB and FerretDB 1.x cannot
//! both store (see the module doc of [`crate::mongodb`]).

use ::mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

/// A value the document store cannot hold, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub(crate) struct Unstorable {
    /// Where the value is, e.g. `payload.items[2].name`.
    pub(crate) path: String,
    /// Why it cannot be stored.
    pub(crate) reason: &'static str,
}

impl Unstorable {
    fn new(reason: &'static str) -> Self {
        Self {
            path: String::new(),
            reason,
        }
    }

    /// The same error, one level further from the value.
    pub(crate) fn within(mut self, segment: &str) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("{segment}{}", self.path)
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }
}

/// A stored value that is not one this store writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected BSON {0} in a stored payload")]
pub(crate) struct Undecodable(pub(crate) String);

/// Checks a string that becomes a BSON string.
pub(crate) fn check_string(s: &str) -> Result<(), Unstorable> {
    if s.contains('\0') {
        return Err(Unstorable::new("strings must not contain NUL characters"));
    }
    Ok(())
}

/// Checks a field name.
fn check_field_name(name: &str) -> Result<(), Unstorable> {
    if name.contains('.') {
        Err(Unstorable::new("field names must not contain '.'"))
    } else if name.starts_with('$') {
        Err(Unstorable::new("field names must not start with '$'"))
    } else if name.contains('\0') {
        Err(Unstorable::new(
            "field names must not contain NUL characters",
        ))
    } else {
        Ok(())
    }
}

/// A JSON object as a BSON document.
pub(crate) fn object_to_document(map: &Map<String, Value>) -> Result<Document, Unstorable> {
    let mut document = Document::new();
    for (name, value) in map {
        check_field_name(name)
            .and_then(|()| value_to_bson(value, false))
            .map(|bson| document.insert(name.clone(), bson))
            .map_err(|e| e.within(name))?;
    }
    Ok(document)
}

/// A JSON value as BSON; `in_array` when it is an element of an array.
fn value_to_bson(value: &Value, in_array: bool) -> Result<Bson, Unstorable> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => number_to_bson(n)?,
        Value::String(s) => {
            check_string(s)?;
            Bson::String(s.clone())
        }
        Value::Array(items) => {
            if in_array {
                return Err(Unstorable::new("arrays must not directly contain arrays"));
            }
            let mut array = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                array.push(value_to_bson(item, true).map_err(|e| e.within(&format!("[{i}]")))?);
            }
            Bson::Array(array)
        }
        Value::Object(map) => Bson::Document(object_to_document(map)?),
    })
}

/// A JSON number as a BSON 64-bit integer or double.
fn number_to_bson(n: &Number) -> Result<Bson, Unstorable> {
    if let Some(i) = n.as_i64() {
        Ok(Bson::Int64(i))
    } else if n.is_u64() {
        Err(Unstorable::new("integers must be at most 2^63 - 1"))
    } else {
        // serde_json numbers are finite: NaN and infinities cannot reach here.
        n.as_f64()
            .map(Bson::Double)
            .ok_or_else(|| Unstorable::new("not a finite number"))
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
        let document = object_to_document(&payload).unwrap();
        assert_eq!(document_to_object(document).unwrap(), payload);
    }

    #[test]
    fn unstorable_values_name_their_path() {
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
            let error = object_to_document(&object(payload)).unwrap_err();
            assert_eq!(
                error,
                Unstorable {
                    path: path.to_owned(),
                    reason
                }
            );
        }
    }

    #[test]
    fn foreign_bson_is_undecodable() {
        let mut document = Document::new();
        document.insert("when", ::mongodb::bson::DateTime::from_millis(0));
        assert!(document_to_object(document).is_err());
    }
}
