//! Dead letters: what Tributary refused, kept with the reason, so nothing is dropped
//! silently.
//!
//! Five places refuse data, and each keeps what it refused as a [`DeadLetter`] in the
//! document store (`DocumentStore::put_dead_letters`), readable through
//! `GET /v1/dead-letters`:
//! - ingestion, for a request it answers 400, 413, 415 or 422 (nothing of it was written);
//! - a source (`tributary ingest`, reading files), for a record that is not a valid event,
//!   kept with its position in the source ([`Origin::File`]); a Kafka source
//!   (`[[sources]] kind = "kafka"`), for a record of a topic, with its topic, partition and
//!   offset ([`Origin::Kafka`]); an MQTT source (`kind = "mqtt"`), for a message, with its
//!   topic ([`Origin::Mqtt`]);
//! - a log reader, for a record in a stream that is not an event of that stream (written
//!   by another producer);
//! - a pipeline, for an event that arrived after its window closed (late);
//! - the archive, for a raw event the document store refused on its own.
//!
//! A dead letter's id is derived from what was refused wherever the same refusal can
//! happen again on a replay after a crash (the same late event, the same log record), so
//! storing it again changes nothing: each refusal is kept once.

use serde::{Deserialize, Serialize};

use crate::event::{EventId, StreamName, Timestamp};

/// The most of the refused data a dead letter keeps, in bytes; more is cut off (at a
/// character boundary) and [`DeadLetter::truncated`] is set.
pub const MAX_DEAD_LETTER_RAW: usize = 1 << 20;

/// The longest reason a dead letter keeps, in bytes; a longer one (a 422 listing every one
/// of many invalid events, say) is cut off at a character boundary and ends with ` …`.
pub const MAX_DEAD_LETTER_REASON: usize = 16 * 1024;

/// Where something was refused, with what locates it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// An ingestion request refused as a whole (nothing of it was written).
    Ingest {
        /// The HTTP status it was answered with.
        status: u16,
    },
    /// A log record that holds no event of its stream.
    Log {
        /// Its partition.
        partition: u32,
        /// Its offset there.
        offset: u64,
    },
    /// An event a pipeline did not count because its window had already closed.
    Late {
        /// The pipeline.
        pipeline: String,
        /// The start of the event's window.
        window_start: Timestamp,
        /// The pipeline's watermark when the event arrived.
        watermark: Timestamp,
    },
    /// A raw event the document store refused.
    Archive,
    /// A record of a file read by the file source that is not a valid event.
    File {
        /// The file, as named on the command line.
        path: String,
        /// The line the record starts on, from 1 (of the decompressed text).
        line: u64,
    },
    /// A record of a Kafka topic read by a Kafka source that is not a valid event.
    Kafka {
        /// The topic it was read from.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset there.
        offset: i64,
    },
    /// A message of an MQTT topic read by an MQTT source that is not a valid event.
    Mqtt {
        /// The topic it was published to.
        topic: String,
    },
}

impl Origin {
    /// The origin's kind, as in its JSON form (`ingest`, `log`, `late`, `archive`): a
    /// metric label.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ingest { .. } => "ingest",
            Self::Log { .. } => "log",
            Self::Late { .. } => "late",
            Self::Archive => "archive",
            Self::File { .. } => "file",
            Self::Kafka { .. } => "kafka",
            Self::Mqtt { .. } => "mqtt",
        }
    }
}

/// Something refused, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Unique; derived from what was refused where a replay could refuse it again (see
    /// the constructors), so storing it twice keeps one.
    pub id: String,
    /// When it was refused.
    pub at: Timestamp,
    /// The stream it was sent to or read from, as given (a refused request may name a
    /// stream that does not exist).
    pub stream: String,
    /// Where it was refused.
    pub origin: Origin,
    /// Why, for a person to read.
    pub reason: String,
    /// What was refused, as text (bytes that are not UTF-8, and NUL characters, are
    /// replaced by U+FFFD), at most [`MAX_DEAD_LETTER_RAW`] bytes.
    pub raw: String,
    /// Whether `raw` was cut off.
    pub truncated: bool,
}

impl DeadLetter {
    /// A refused ingestion request; `raw` is its body (possibly empty when the body was
    /// not read, e.g. too large). Each refusal is its own dead letter.
    #[must_use]
    pub fn ingest(stream: &str, status: u16, reason: String, raw: &[u8]) -> Self {
        Self::new(
            format!("ingest:{}", EventId::generate()),
            stream.to_owned(),
            Origin::Ingest { status },
            reason,
            raw,
        )
    }

    /// A log record that holds no event of `stream`. Its id is its position.
    #[must_use]
    pub fn log_record(
        stream: &StreamName,
        partition: u32,
        offset: u64,
        reason: String,
        raw: &[u8],
    ) -> Self {
        Self::new(
            format!("log:{stream}:{partition}:{offset}"),
            stream.to_string(),
            Origin::Log { partition, offset },
            reason,
            raw,
        )
    }

    /// An event `pipeline` did not count because its window had closed. Its id is the
    /// pipeline and the event's (stream, id).
    #[must_use]
    pub fn late(
        pipeline: &str,
        event: &crate::Event,
        window_start: Timestamp,
        watermark: Timestamp,
    ) -> Self {
        Self::new(
            format!("late:{pipeline}:{}:{}", event.stream, event.id),
            event.stream.to_string(),
            Origin::Late {
                pipeline: pipeline.to_owned(),
                window_start,
                watermark,
            },
            format!("late: its window starting {window_start} had closed (watermark {watermark})"),
            &event.to_json_bytes(),
        )
    }

    /// A raw event the document store refused. Its id is the event's (stream, id).
    #[must_use]
    pub fn archive(event: &crate::Event, reason: String) -> Self {
        Self::new(
            format!("archive:{}:{}", event.stream, event.id),
            event.stream.to_string(),
            Origin::Archive,
            reason,
            &event.to_json_bytes(),
        )
    }

    /// A record of a file that is not a valid event of `stream`: at `line` of the file
    /// named `path`, whose identity (a digest of its content, stable across runs) is
    /// `file_identity`. Its id is the stream, the file's identity and the line, so a re-run
    /// over the same file refuses it under the same id.
    #[must_use]
    pub fn file(
        stream: &StreamName,
        (path, file_identity, line): (&str, &str, u64),
        reason: String,
        raw: &[u8],
    ) -> Self {
        Self::new(
            format!("file:{stream}:{file_identity}:{line}"),
            stream.to_string(),
            Origin::File {
                path: path.to_owned(),
                line,
            },
            reason,
            raw,
        )
    }

    /// A record of a Kafka topic, read by a Kafka source, that is not a valid event of
    /// `stream`. Its id is the stream and the record's position, so a replay of the topic
    /// refuses it under the same id.
    #[must_use]
    pub fn kafka(
        stream: &StreamName,
        (topic, partition, offset): (&str, i32, i64),
        reason: String,
        raw: &[u8],
    ) -> Self {
        Self::new(
            format!("kafka:{stream}:{topic}:{partition}:{offset}"),
            stream.to_string(),
            Origin::Kafka {
                topic: topic.to_owned(),
                partition,
                offset,
            },
            reason,
            raw,
        )
    }

    /// A message of an MQTT topic, read by an MQTT source, that is not a valid event of
    /// `stream`; `digest` identifies its payload (the source's hex SHA-256 prefix). MQTT
    /// messages have no position, so its id is the stream, the topic and the digest: a
    /// redelivery of the message is refused under the same id (and so is an identical
    /// payload published again to the topic).
    #[must_use]
    pub fn mqtt(
        stream: &StreamName,
        (topic, digest): (&str, &str),
        reason: String,
        raw: &[u8],
    ) -> Self {
        Self::new(
            format!("mqtt:{stream}:{topic}:{digest}"),
            stream.to_string(),
            Origin::Mqtt {
                topic: topic.to_owned(),
            },
            reason,
            raw,
        )
    }

    fn new(id: String, stream: String, origin: Origin, reason: String, raw: &[u8]) -> Self {
        let (raw, truncated) = cut(
            String::from_utf8_lossy(raw).into_owned(),
            MAX_DEAD_LETTER_RAW,
        );
        let (mut reason, reason_cut) = cut(reason, MAX_DEAD_LETTER_REASON);
        if reason_cut {
            reason.push_str(" …");
        }
        Self {
            id: without_nul(id),
            at: Timestamp::now(),
            stream: without_nul(stream),
            origin,
            reason: without_nul(reason),
            raw: without_nul(raw),
            truncated,
        }
    }
}

/// `text` with each NUL character replaced by U+FFFD, as bytes that are not UTF-8 are:
/// some document stores (FerretDB, on PostgreSQL) cannot hold NUL, and a dead letter is
/// text for a person to read, so every store keeps it the same.
fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

/// An error and its whole source chain on one line (`outer: cause: root cause`): the
/// reason text of a dead letter refused by an error.
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// A position in the dead letters, newest first: the last one of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCursor {
    /// When it was refused.
    pub at: Timestamp,
    /// Its id.
    pub id: String,
}

/// Which streams' dead letters a query reads, by the stream a letter names: the store
/// applies it, so a page holds only selected letters and is full when enough of them are
/// stored (a gateway reads one tenant's letters this way).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamSelection {
    /// Every stream's.
    #[default]
    All,
    /// Only those of these streams.
    Only(Vec<String>),
    /// Those of every stream but these.
    Except(Vec<String>),
}

impl StreamSelection {
    /// Whether a letter naming `stream` is selected.
    #[must_use]
    pub fn selects(&self, stream: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(streams) => streams.iter().any(|s| s == stream),
            Self::Except(streams) => !streams.iter().any(|s| s == stream),
        }
    }
}

/// A page request over the dead letters, newest first (by `at`, then `id`, descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// At most this many.
    pub limit: usize,
    /// Only dead letters strictly after this cursor in newest-first order.
    pub after: Option<DeadLetterCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn event() -> Event {
        Event {
            id: EventId::new("e-1").unwrap(),
            stream: StreamName::new("clicks").unwrap(),
            ts: Timestamp::from_millis(60_500),
            key: Some("k".into()),
            payload: serde_json::Map::new(),
        }
    }

    #[test]
    fn replayed_refusals_get_the_same_id() {
        let e = event();
        let w = Timestamp::from_millis(120_000);
        assert_eq!(
            DeadLetter::late("p", &e, Timestamp::from_millis(60_000), w).id,
            DeadLetter::late("p", &e, Timestamp::from_millis(60_000), w).id
        );
        assert_ne!(
            DeadLetter::late("p", &e, Timestamp::from_millis(60_000), w).id,
            DeadLetter::late("q", &e, Timestamp::from_millis(60_000), w).id
        );
        let s = StreamName::new("clicks").unwrap();
        assert_eq!(
            DeadLetter::log_record(&s, 1, 7, "x".into(), b"?").id,
            "log:clicks:1:7"
        );
        assert_eq!(DeadLetter::archive(&e, "x".into()).id, "archive:clicks:e-1");
        assert_ne!(
            DeadLetter::ingest("clicks", 422, "x".into(), b"{}").id,
            DeadLetter::ingest("clicks", 422, "x".into(), b"{}").id
        );
    }

    #[test]
    fn raw_is_kept_as_text_and_bounded() {
        let late = DeadLetter::late(
            "p",
            &event(),
            Timestamp::from_millis(60_000),
            Timestamp::from_millis(130_000),
        );
        assert_eq!(late.raw.as_bytes(), event().to_json_bytes());
        assert!(!late.truncated);
        assert_eq!(late.origin.kind(), "late");

        let s = StreamName::new("clicks").unwrap();
        let garbage = DeadLetter::log_record(&s, 0, 0, "x\0".into(), &[b'a', 0xff, b'b', 0]);
        assert_eq!(garbage.raw, "a\u{fffd}b\u{fffd}");
        assert_eq!(garbage.reason, "x\u{fffd}");

        let mut big = "é".repeat(MAX_DEAD_LETTER_RAW / 2);
        big.push('x');
        let cut = DeadLetter::ingest("clicks", 400, "x".into(), big.as_bytes());
        assert!(cut.truncated);
        assert!(cut.raw.len() <= MAX_DEAD_LETTER_RAW);
        assert!(cut.raw.chars().all(|c| c == 'é'));

        let long = DeadLetter::ingest("clicks", 422, "é".repeat(MAX_DEAD_LETTER_REASON), b"");
        assert!(long.reason.len() <= MAX_DEAD_LETTER_REASON + " …".len());
        assert!(long.reason.ends_with(" …"));
        assert!(!long.truncated, "truncated is about raw");
    }

    #[test]
    fn origin_serializes_with_its_kind() {
        let json = serde_json::to_value(Origin::Log {
            partition: 2,
            offset: 9,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "log", "partition": 2, "offset": 9})
        );
        let back: Origin = serde_json::from_value(json).unwrap();
        assert_eq!(back.kind(), "log");

        let s = StreamName::new("clicks").unwrap();
        let letter = DeadLetter::file(&s, ("in/é.ndjson", "f0a1", 7), "bad".into(), b"{");
        assert_eq!(letter.id, "file:clicks:f0a1:7");
        assert_eq!(
            serde_json::to_value(&letter.origin).unwrap(),
            serde_json::json!({"kind": "file", "path": "in/é.ndjson", "line": 7})
        );
        assert_eq!(letter.origin.kind(), "file");

        let letter = DeadLetter::mqtt(&s, ("shop/orders", "ab12"), "bad".into(), b"{");
        assert_eq!(letter.id, "mqtt:clicks:shop/orders:ab12");
        assert_eq!(
            serde_json::to_value(&letter.origin).unwrap(),
            serde_json::json!({"kind": "mqtt", "topic": "shop/orders"})
        );
        assert_eq!(letter.origin.kind(), "mqtt");
    }
}
