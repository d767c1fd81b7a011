//! The event: the unit that flows from a source, through the log and the pipelines, to the
//! stores.
//!
//! An event is `id` (unique within its stream), `stream`, `ts` (event time), an optional
//! `key` and a JSON object `payload`. The types here only hold values that are already
//! valid: a [`StreamName`] or an [`EventId`] cannot be built from a bad string.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Longest accepted stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 64;
/// Longest accepted event id, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 128;
/// Longest accepted event key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A stream's name: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter
/// or digit. Names are safe to use in topic, table and collection names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamName(String);

/// Why a string is not a valid [`StreamName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream name {name:?}: {reason}")]
pub struct InvalidStreamName {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl StreamName {
    /// Checks `name` and wraps it.
    ///
    /// # Errors
    /// When the name is empty, too long, or has a character outside `[a-z0-9_-]`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidStreamName> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > MAX_STREAM_NAME_LEN {
            Some("must be at most 64 characters")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            Some("may only contain a-z, 0-9, '_' and '-'")
        } else if name.starts_with(['_', '-']) {
            Some("must start with a letter or a digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidStreamName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StreamName {
    type Err = InvalidStreamName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

/// An event's id: a non-empty string of at most 128 bytes, unique within its stream.
/// Generated as a UUIDv7 when the source gives none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// A fresh, time-ordered id (UUIDv7).
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Checks `id` and wraps it.
    ///
    /// # Errors
    /// When `id` is empty or longer than [`MAX_EVENT_ID_LEN`] bytes; the error is the reason.
    pub fn new(id: impl Into<String>) -> Result<Self, &'static str> {
        let id = id.into();
        if id.is_empty() {
            Err("must not be empty")
        } else if id.len() > MAX_EVENT_ID_LEN {
            Err("must be at most 128 bytes")
        } else {
            Ok(Self(id))
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Event time, in milliseconds since the Unix epoch (UTC).
///
/// Serialized as an RFC 3339 string with milliseconds; read from an RFC 3339 string or from
/// an integer number of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest representable time; the watermark before any event.
    pub const MIN: Self = Self(i64::MIN);

    /// Wraps epoch milliseconds.
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Epoch milliseconds.
    #[must_use]
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    #[must_use]
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    /// Parses an RFC 3339 date-time, such as `2026-11-25T18:00:00.250Z`.
    ///
    /// # Errors
    /// When `text` is not RFC 3339; the error says what was expected.
    pub fn parse_rfc3339(text: &str) -> Result<Self, &'static str> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|_| "must be an RFC 3339 date-time (e.g. 2026-11-25T18:00:00Z) or epoch milliseconds")
    }

    /// This time as a `chrono` UTC date-time, when it is within chrono's range.
    #[must_use]
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_millis_opt(self.0).single()
    }

    /// Adds a number of milliseconds, saturating at the ends of the range.
    #[must_use]
    pub const fn saturating_add(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Times outside the calendar range (such as `MIN`) stay epoch milliseconds.
        match self.to_datetime() {
            Some(_) => serializer.collect_str(self),
            None => serializer.serialize_i64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Self::parse_rfc3339(&s).map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_i64()
                .map(Self)
                .ok_or_else(|| serde::de::Error::custom("epoch milliseconds must be an integer")),
            _ => Err(serde::de::Error::custom(
                "expected an RFC 3339 string or epoch milliseconds",
            )),
        }
    }
}

/// One event, valid by construction of its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique within `stream`.
    pub id: EventId,
    /// The stream this event belongs to.
    pub stream: StreamName,
    /// Event time.
    pub ts: Timestamp,
    /// The grouping key, when the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The event's data: always a JSON object.
    pub payload: Map<String, Value>,
}

impl Event {
    /// The event encoded for the log: one compact JSON object.
    #[must_use]
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings, integers and a JSON map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes an event written by [`Event::to_json_bytes`].
    ///
    /// # Errors
    /// When the bytes are not such an event.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The key used for partitioning: the event's key, or its id when it has none.
    #[must_use]
    pub fn partition_key(&self) -> &str {
        self.key.as_deref().unwrap_or(self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_checked() {
        assert!(StreamName::new("clicks").is_ok());
        assert!(StreamName::new("web-clicks_2").is_ok());
        for bad in ["", "Clicks", "a.b", "-x", "_x", &"x".repeat(65)] {
            assert!(StreamName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timestamps_round_trip_through_json() {
        let ts = Timestamp::parse_rfc3339("2026-11-25T18:00:00.250+01:00").unwrap();
        assert_eq!(ts.to_string(), "2026-11-25T17:00:00.250Z");
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        assert_eq!(
            serde_json::from_str::<Timestamp>(&ts.millis().to_string()).unwrap(),
            ts
        );
        let min = serde_json::to_string(&Timestamp::MIN).unwrap();
        assert_eq!(
            serde_json::from_str::<Timestamp>(&min).unwrap(),
            Timestamp::MIN
        );
    }

    #[test]
    fn events_round_trip_through_log_bytes() {
        let event = Event {
            id: EventId::new("e1").unwrap(),
            stream: StreamName::new("orders").unwrap(),
            ts: Timestamp::from_millis(1_700_000_000_000),
            key: Some("fr".into()),
            payload: serde_json::json!({"amount": 12.5})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert_eq!(
            Event::from_json_bytes(&event.to_json_bytes()).unwrap(),
            event
        );
    }
}
