//! A broker's record turned into the event's shape: the JSON value parsed, the configured
//! members renamed to `id`, `ts` and `key` (the file source's mapping,
//! [`records::ndjson_event`]), the `ts` read in the declared [`TsFormat`], and an id derived
//! from the record's position when it has none.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ingest::records::{self, Fields};

/// How a source's records write their event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TsFormat {
    /// An RFC 3339 date-time string, such as `"2026-01-01T00:00:00Z"`.
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch: a number (fractions are rounded to the millisecond)
    /// or a string of digits.
    EpochS,
    /// Milliseconds since the Unix epoch: an integer or a string of digits.
    EpochMs,
}

/// `raw` (a record's value) in the event's shape, or why it is not a JSON object with a
/// `ts` in `format`. A record without an id gets `derived_id()`.
///
/// # Errors
/// The reason, for a dead letter.
pub fn to_event_shape(
    raw: &[u8],
    fields: &Fields,
    format: TsFormat,
    derived_id: impl FnOnce() -> String,
) -> Result<Value, String> {
    let object = match tributary_core::json::from_slice(raw) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err("the value is not a JSON object".to_owned()),
        Err(error) => return Err(format!("malformed JSON: {error}")),
    };
    let Value::Object(mut object) = records::ndjson_event(object, fields, derived_id) else {
        return Err("the value is not a JSON object".to_owned());
    };
    convert_ts(&mut object, format).map_err(|reason| format!("ts: {reason}"))?;
    Ok(Value::Object(object))
}

/// Rewrites `object`'s `ts` in `format` as the event's shape reads it (RFC 3339 strings,
/// epoch milliseconds as integers); an absent or null `ts` stays (arrival time).
fn convert_ts(object: &mut Map<String, Value>, format: TsFormat) -> Result<(), String> {
    let Some(ts) = object.get_mut("ts") else {
        return Ok(());
    };
    let converted = match (format, &*ts) {
        (_, Value::Null) | (TsFormat::Rfc3339, Value::String(_)) => return Ok(()),
        (TsFormat::Rfc3339, _) => {
            return Err("must be an RFC 3339 date-time string (ts_format = \"rfc3339\")".into());
        }
        (TsFormat::EpochMs, value) => epoch(value, 1)?,
        (TsFormat::EpochS, value) => epoch(value, 1000)?,
    };
    *ts = Value::from(converted);
    Ok(())
}

/// Milliseconds of an epoch time `value` counted in units of `millis_per_unit` ms.
fn epoch(value: &Value, millis_per_unit: i64) -> Result<i64, String> {
    let unit = if millis_per_unit == 1 {
        "epoch milliseconds"
    } else {
        "epoch seconds"
    };
    let invalid = || format!("must be {unit} (a number or a string of digits)");
    let number = match value {
        Value::Number(n) => n.clone(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            serde_json::Number::from(s.parse::<i64>().map_err(|_| invalid())?)
        }
        _ => return Err(invalid()),
    };
    if let Some(whole) = number.as_i64() {
        return whole
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("{unit} out of range"));
    }
    match number.as_f64() {
        Some(f) if millis_per_unit > 1 && f.is_finite() && f.abs() < 1e15 => {
            // Within ±1e15 s the product fits an i64 exactly enough for milliseconds.
            #[allow(clippy::cast_possible_truncation)]
            Ok((f * millis_per_unit as f64).round() as i64)
        }
        Some(_) if millis_per_unit == 1 => Err("epoch milliseconds must be an integer".into()),
        _ => Err(format!("{unit} out of range")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn fields() -> Fields {
        Fields {
            id: "event_id".into(),
            ts: "time".into(),
            key: "user".into(),
        }
    }

    fn shape(raw: &str, format: TsFormat) -> Result<Value, String> {
        to_event_shape(raw.as_bytes(), &fields(), format, || "derived".into())
    }

    #[test]
    fn fields_are_renamed_and_ids_derived() {
        let value = shape(
            r#"{"time": "2026-01-01T00:00:00Z", "user": "u1", "payload": {"a": 1}}"#,
            TsFormat::Rfc3339,
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"id": "derived", "ts": "2026-01-01T00:00:00Z", "key": "u1", "payload": {"a": 1}})
        );
        let kept = shape(r#"{"event_id": "e1"}"#, TsFormat::Rfc3339).unwrap();
        assert_eq!(kept["id"], "e1");
    }

    #[test]
    fn ts_is_read_in_the_declared_format() {
        let s = shape(r#"{"time": 1767225600}"#, TsFormat::EpochS).unwrap();
        assert_eq!(s["ts"], 1_767_225_600_000_i64);
        let frac = shape(r#"{"time": 1767225600.25}"#, TsFormat::EpochS).unwrap();
        assert_eq!(frac["ts"], 1_767_225_600_250_i64);
        let ms = shape(r#"{"time": "1767225600123"}"#, TsFormat::EpochMs).unwrap();
        assert_eq!(ms["ts"], 1_767_225_600_123_i64);
        assert!(shape(r#"{"time": 1767225600}"#, TsFormat::Rfc3339).is_err());
        assert!(shape(r#"{"time": "yesterday"}"#, TsFormat::EpochS).is_err());
        assert!(shape(r#"{"time": 1.5}"#, TsFormat::EpochMs).is_err());
        assert!(shape(r#"{"time": 9223372036854775807}"#, TsFormat::EpochS).is_err());
    }

    #[test]
    fn values_that_are_no_objects_are_refused() {
        assert!(
            shape("[1]", TsFormat::Rfc3339)
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            shape("{", TsFormat::Rfc3339)
                .unwrap_err()
                .contains("malformed JSON")
        );
        assert!(shape("", TsFormat::Rfc3339).is_err());
    }
}
