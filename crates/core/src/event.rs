//! The event: the unit that flows from a source, through the log and the pipelines, to the
//! stores.
//!
//! An event is `id` (unique within its stream), `stream`, `ts` (event time), an optional
//! `key` and a JSON object `payload`. The types here only hold values that are already
//! valid: a [`StreamName`] or an [`EventId`] cannot be built from a bad string.
//!
//! The limits every store can hold are here too, for ingestion to check: an event time
//! within [`Timestamp::MIN_VALID`]`..=`[`Timestamp::MAX_VALID`], a key accepted by
//! [`check_key`], and at most [`MAX_EVENT_BYTES`] of JSON for the whole event.

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
/// The most an event may take encoded as JSON, as the log stores it
/// ([`Event::to_json_bytes`]), in bytes. With its key and record overhead it fits in the
/// 1 MiB the Kafka adapter's producer and topics are configured for, so both modes accept
/// the same events.
pub const MAX_EVENT_BYTES: usize = 1_000_000;

/// Checks an event key (also used for keys in queries).
///
/// # Errors
/// When the key is longer than [`MAX_KEY_LEN`] bytes or contains a NUL character; the error
/// is the reason.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.contains('\0') {
        Err("must not contain NUL characters")
    } else if key.len() > MAX_KEY_LEN {
        Err("must be at most 256 bytes")
    } else {
        Ok(())
    }
}

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct EventId(String);

/// Deserialization goes through the checks of [`EventId::new`].
impl TryFrom<String> for EventId {
    type Error = &'static str;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

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

    /// The earliest valid event time: `0000-01-01T00:00:00Z`.
    ///
    /// Event times are limited to RFC 3339's four-digit years, which every store holds
    /// (PostgreSQL's `timestamptz` included), with room for the window ends computed from
    /// them.
    pub const MIN_VALID: Self = Self(-62_167_219_200_000);

    /// The latest valid event time: `9999-12-31T23:59:59.999Z`.
    pub const MAX_VALID: Self = Self(253_402_300_799_999);

    /// Why a time is not a valid event time (see [`Timestamp::validated`]).
    const OUT_OF_RANGE: &'static str = "must be between 0000-01-01T00:00:00Z and \
        9999-12-31T23:59:59.999Z (epoch milliseconds -62167219200000 to 253402300799999)";

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
        if let Some(fast) = Self::parse_utc_millis(text.as_bytes()) {
            return Ok(fast);
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|_| "must be an RFC 3339 date-time (e.g. 2026-11-25T18:00:00Z) or epoch milliseconds")
    }

    /// The form Tributary writes, `YYYY-MM-DDTHH:MM:SS.mmmZ` (or without the
    /// milliseconds), parsed without chrono; `None` for anything else, including days or
    /// times out of range, which [`DateTime::parse_from_rfc3339`] then judges.
    fn parse_utc_millis(text: &[u8]) -> Option<Self> {
        fn digits(bytes: &[u8]) -> Option<i64> {
            bytes.iter().try_fold(0_i64, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
            })
        }
        let (time, millis) = match text.len() {
            20 => (text, 0),
            24 if text[19] == b'.' => (text, digits(&text[20..23])?),
            _ => return None,
        };
        if time[4] != b'-'
            || time[7] != b'-'
            || time[10] != b'T'
            || time[13] != b':'
            || time[16] != b':'
            || *text.last()? != b'Z'
        {
            return None;
        }
        let (year, month, day) = (
            digits(&time[0..4])?,
            digits(&time[5..7])?,
            digits(&time[8..10])?,
        );
        let (hour, minute, second) = (
            digits(&time[11..13])?,
            digits(&time[14..16])?,
            digits(&time[17..19])?,
        );
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
        // `days_from_civil`).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(Self(
            ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis,
        ))
    }

    /// This time as a `chrono` UTC date-time, when it is within chrono's range.
    #[must_use]
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_millis_opt(self.0).single()
    }

    /// Whether this time is a valid event time, within
    /// [`Self::MIN_VALID`]`..=`[`Self::MAX_VALID`].
    #[must_use]
    pub const fn is_valid(self) -> bool {
        Self::MIN_VALID.0 <= self.0 && self.0 <= Self::MAX_VALID.0
    }

    /// This time, when it is a valid event time (see [`Self::is_valid`]).
    ///
    /// # Errors
    /// When it is not; the error is the reason, naming the range in both forms.
    pub const fn validated(self) -> Result<Self, &'static str> {
        if self.is_valid() {
            Ok(self)
        } else {
            Err(Self::OUT_OF_RANGE)
        }
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
        use serde::de::{Error, Unexpected, Visitor};

        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_str<E: Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("epoch milliseconds must be an integer"))
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Timestamp, E> {
                Err(E::custom("epoch milliseconds must be an integer"))
            }
            fn visit_bool<E: Error>(self, v: bool) -> Result<Timestamp, E> {
                Err(E::invalid_type(Unexpected::Bool(v), &self))
            }
        }
        deserializer.deserialize_any(TimestampVisitor)
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

    /// The length of [`Event::to_json_bytes`], computed without encoding the event.
    ///
    /// Exact: strings count with serde_json's escaping (`\"`, `\\`, the short escapes
    /// of `\b \f \n \r \t`, `\u00XX` for other control characters, everything else as
    /// its UTF-8 bytes), and numbers as their `Display` form, which is how serde_json writes
    /// them (integers in decimal, floats in shortest round-trip form).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        const PUNCTUATION: usize = r#"{"id":,"stream":,"ts":,"payload":}"#.len();
        let ts = if self.ts.to_datetime().is_some() {
            display_len(self.ts) + 2
        } else {
            display_len(self.ts.0)
        };
        let key = self
            .key
            .as_deref()
            .map_or(0, |key| r#","key":"#.len() + json_str_len(key));
        PUNCTUATION
            + json_str_len(self.id.as_str())
            + json_str_len(self.stream.as_str())
            + ts
            + key
            + json_object_len(&self.payload)
    }

    /// The key used for partitioning: the event's key, or its id when it has none.
    #[must_use]
    pub fn partition_key(&self) -> &str {
        self.key.as_deref().unwrap_or(self.id.as_str())
    }
}

/// Counts the bytes written through `fmt::Write`.
struct ByteCount(usize);

impl fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// The length of `value`'s `Display` form.
fn display_len(value: impl fmt::Display) -> usize {
    let mut count = ByteCount(0);
    // `ByteCount` never fails, and `Display` implementations only fail when the writer does.
    let _ = fmt::write(&mut count, format_args!("{value}"));
    count.0
}

/// The length of `s` as a compact JSON string, quotes included.
fn json_str_len(s: &str) -> usize {
    let escapes: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | b'\t' | b'\n' | 0x0C | b'\r' => 1,
            0x00..=0x1F => 5,
            _ => 0,
        })
        .sum();
    s.len() + escapes + 2
}

/// The length of `map` as a compact JSON object.
fn json_object_len(map: &Map<String, Value>) -> usize {
    let entries: usize = map
        .iter()
        .map(|(name, value)| json_str_len(name) + 1 + json_len(value))
        .sum();
    2 + entries + map.len().saturating_sub(1)
}

/// The length of `value` as compact JSON.
fn json_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => display_len(n),
        Value::String(s) => json_str_len(s),
        Value::Array(items) => {
            2 + items.iter().map(json_len).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Object(map) => json_object_len(map),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
    fn valid_event_times_are_the_four_digit_years() {
        assert_eq!(Timestamp::MIN_VALID.to_string(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::MAX_VALID.to_string(), "9999-12-31T23:59:59.999Z");
        for valid in [
            Timestamp::MIN_VALID,
            Timestamp::MAX_VALID,
            Timestamp::from_millis(0),
        ] {
            assert_eq!(valid.validated(), Ok(valid));
        }
        for invalid in [
            Timestamp::MIN_VALID.saturating_add(-1),
            Timestamp::MAX_VALID.saturating_add(1),
            Timestamp::MIN,
            Timestamp::from_millis(8_210_266_876_799_000),
        ] {
            assert!(!invalid.is_valid(), "{invalid}");
            let reason = invalid.validated().unwrap_err();
            assert!(
                reason.contains(&Timestamp::MIN_VALID.millis().to_string())
                    && reason.contains(&Timestamp::MAX_VALID.millis().to_string()),
                "{reason}"
            );
        }
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(check_key(""), Ok(()));
        assert_eq!(check_key(&"k".repeat(MAX_KEY_LEN)), Ok(()));
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(format!("must be at most {MAX_KEY_LEN} bytes").as_str())
        );
        assert!(check_key("a\0b").is_err());
    }

    #[test]
    fn encoded_len_is_the_length_of_the_log_bytes() {
        let payloads = [
            json!({}),
            json!({"s": "plain", "n": null, "t": true, "f": false}),
            json!({"esc": "quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{8} ff \u{c}"}),
            json!({"ctl": "\u{1}\u{1f}\u{7f}", "k\"e\\y\n": "v"}),
            json!({"uni": "日本語 😀 é", "ключ": "значение"}),
            json!({"i": 0, "neg": -42, "max": i64::MAX, "min": i64::MIN, "u": u64::MAX}),
            json!({"f": [0.1, -2.5, 1e300, 1.0e-7, 123_456_789.123, f64::MAX, f64::MIN_POSITIVE, -0.0]}),
            json!({"nested": {"a": [1, "x", {"b": [2, {"c": {}}]}, []], "o": {"p": {"q": "r"}}}}),
        ];
        for (i, payload) in payloads.into_iter().enumerate() {
            let Value::Object(payload) = payload else {
                unreachable!()
            };
            for key in [None, Some("k"), Some("k\"\u{0}\u{1} ü")] {
                for ts in [
                    Timestamp::from_millis(1_700_000_000_123),
                    Timestamp::MIN_VALID,
                    Timestamp::MAX_VALID,
                    Timestamp::MIN,
                ] {
                    let event = Event {
                        id: EventId::new(format!("id-{i}\t\"")).unwrap(),
                        stream: StreamName::new("s-1").unwrap(),
                        ts,
                        key: key.map(str::to_owned),
                        payload: payload.clone(),
                    };
                    let actual = event.to_json_bytes().len();
                    assert_eq!(event.encoded_len(), actual, "{event:?}");
                }
            }
        }
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
