//! Reading a file into records: NDJSON or CSV, plain or compressed (gzip, zstd), each record
//! with the line it starts on.
//!
//! Contract:
//! - The compression is read from the file's first bytes (gzip `1f 8b`, zstd
//!   `28 b5 2f fd`), not from its name; anything else is read as is.
//! - NDJSON: one JSON object per line; blank lines are skipped (they are no records). A
//!   line that is not a JSON object (or repeats a key) is a refused record.
//! - CSV: a header row names the columns; each row is an object of its columns (strings),
//!   quoted fields may hold separators, quotes (`""`) and newlines. A row with another
//!   number of fields than the header is a refused record.
//! - Each record is turned into the event's shape: the members (NDJSON) or columns (CSV)
//!   named by [`Fields`] become `id`, `ts` and `key`; for CSV every other column goes into
//!   `payload` (a `ts` of digits only is read as epoch milliseconds, an empty `id`, `ts` or
//!   `key` counts as absent). NDJSON lines already hold `payload`.
//! - A record without an `id` gets one derived from the file's identity and its line, so
//!   that reading the same file again gives the same ids.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// How a file's records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// The format a file's name suggests (after a `.gz` or `.zst` suffix): CSV for `.csv`,
    /// NDJSON otherwise.
    #[must_use]
    pub fn of_name(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        if name.ends_with(".csv") {
            Self::Csv
        } else {
            Self::Ndjson
        }
    }
}

/// The names of the members (or columns) that hold an event's id, time and key.
#[derive(Debug, Clone)]
pub struct Fields {
    /// Becomes `id`.
    pub id: String,
    /// Becomes `ts`.
    pub ts: String,
    /// Becomes `key`.
    pub key: String,
}

/// One record of a file.
#[derive(Debug)]
pub struct Record {
    /// The line it starts on, from 1.
    pub line: u64,
    /// Its text, as read (for a dead letter).
    pub raw: Vec<u8>,
    /// The record in the event's shape, or why it is not one.
    pub value: Result<Value, String>,
}

/// A reader counting the bytes read through it (of the file as stored, for the progress).
#[derive(Debug)]
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Counting<R> {
    /// Counts what is read from `inner` into `count`.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `file`, decompressed according to its first bytes.
///
/// # Errors
/// When it cannot be read, or a decoder cannot start.
pub fn decompressed<R: Read + Send + 'static>(file: R) -> io::Result<Box<dyn Read + Send>> {
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let head = file.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(file)?))
    } else {
        Ok(Box::new(file))
    }
}

/// The records of a decompressed file, in order.
pub fn records(
    input: Box<dyn Read + Send>,
    format: Format,
    fields: Fields,
    derived_id: impl Fn(u64) -> String + Send + 'static,
) -> Box<dyn Iterator<Item = io::Result<Record>> + Send> {
    match format {
        Format::Ndjson => Box::new(NdjsonRecords {
            input: BufReader::with_capacity(256 * 1024, input),
            line: 0,
            fields,
            derived_id: Box::new(derived_id),
        }),
        Format::Csv => Box::new(csv_records(input, fields, derived_id)),
    }
}

/// The records of an NDJSON file.
struct NdjsonRecords {
    input: BufReader<Box<dyn Read + Send>>,
    line: u64,
    fields: Fields,
    derived_id: Box<dyn Fn(u64) -> String + Send>,
}

impl Iterator for NdjsonRecords {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut raw = Vec::new();
            match self.input.read_until(b'\n', &mut raw) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => return Some(Err(error)),
            }
            self.line += 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                raw.pop();
            }
            let value = match tributary_core::json::from_slice(&raw) {
                Ok(Value::Object(object)) => Ok(ndjson_event(object, &self.fields, || {
                    (self.derived_id)(self.line)
                })),
                Ok(_) => Err("the line is not a JSON object".to_owned()),
                Err(error) => Err(format!("malformed JSON: {error}")),
            };
            return Some(Ok(Record {
                line: self.line,
                raw,
                value,
            }));
        }
    }
}

/// An NDJSON line's object in the event's shape: the named members renamed, and an id
/// from `derived_id` when it has none. Shared with the broker sources ([`crate::sources`]).
pub fn ndjson_event(
    mut object: Map<String, Value>,
    fields: &Fields,
    derived_id: impl FnOnce() -> String,
) -> Value {
    for (from, to) in [(&fields.id, "id"), (&fields.ts, "ts"), (&fields.key, "key")] {
        if from != to
            && let Some(value) = object.remove(from.as_str())
        {
            object.insert(to.to_owned(), value);
        }
    }
    if matches!(object.get("id"), None | Some(Value::Null)) {
        object.insert("id".to_owned(), Value::String(derived_id()));
    }
    Value::Object(object)
}

/// The records of a CSV file with a header row.
fn csv_records(
    input: Box<dyn Read + Send>,
    fields: Fields,
    derived_id: impl Fn(u64) -> String + Send + 'static,
) -> impl Iterator<Item = io::Result<Record>> + Send {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = reader.byte_headers().cloned().map_err(csv_error);
    let mut headers = Some(headers);
    let mut rows = reader.into_byte_records();
    std::iter::from_fn(move || {
        let header = match headers.as_ref()? {
            Ok(header) => header.clone(),
            Err(_) => {
                let error = headers.take().and_then(Result::err)?;
                return Some(Err(error));
            }
        };
        let row = match rows.next()? {
            Ok(row) => row,
            Err(error) => return Some(Err(csv_error(error))),
        };
        let line = row.position().map_or(0, csv::Position::line);
        let raw = raw_row(&row);
        let value = if row.len() == header.len() {
            csv_event(&header, &row, &fields, || derived_id(line))
        } else {
            Err(format!(
                "the row has {} field(s), the header {}",
                row.len(),
                header.len()
            ))
        };
        Some(Ok(Record { line, raw, value }))
    })
}

/// A CSV row's text, its fields joined by commas (quoted as needed): for a dead letter.
fn raw_row(row: &csv::ByteRecord) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Writing to memory does not fail.
    let _ = writer.write_byte_record(row);
    let mut raw = writer.into_inner().unwrap_or_default();
    while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        raw.pop();
    }
    raw
}

/// A CSV row in the event's shape.
fn csv_event(
    header: &csv::ByteRecord,
    row: &csv::ByteRecord,
    fields: &Fields,
    derived_id: impl FnOnce() -> String,
) -> Result<Value, String> {
    let mut event = Map::new();
    let mut payload = Map::new();
    for (name, field) in header.iter().zip(row.iter()) {
        let name = std::str::from_utf8(name).map_err(|_| "a column name is not UTF-8")?;
        let text = std::str::from_utf8(field)
            .map_err(|_| format!("column {name:?} is not UTF-8"))?
            .to_owned();
        if name == fields.id || name == fields.key {
            let to = if name == fields.id { "id" } else { "key" };
            if !text.is_empty() {
                event.insert(to.to_owned(), Value::String(text));
            }
        } else if name == fields.ts {
            if let Ok(millis) = text.parse::<i64>() {
                event.insert("ts".to_owned(), Value::from(millis));
            } else if !text.is_empty() {
                event.insert("ts".to_owned(), Value::String(text));
            }
        } else if payload
            .insert(name.to_owned(), Value::String(text))
            .is_some()
        {
            return Err(format!("the header names column {name:?} twice"));
        }
    }
    if !event.contains_key("id") {
        event.insert("id".to_owned(), Value::String(derived_id()));
    }
    event.insert("payload".to_owned(), Value::Object(payload));
    Ok(Value::Object(event))
}

fn csv_error(error: csv::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fields() -> Fields {
        Fields {
            id: "id".into(),
            ts: "ts".into(),
            key: "key".into(),
        }
    }

    fn read(text: &str, format: Format) -> Vec<Record> {
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(text.as_bytes().to_vec()));
        records(input, format, fields(), |line| format!("f:{line}"))
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn ndjson_lines_keep_their_numbers_and_get_derived_ids() {
        let records = read(
            "{\"payload\":{}}\n\n{oops\n{\"id\":\"x\",\"payload\":{}}\n",
            Format::Ndjson,
        );
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4]);
        assert_eq!(records[0].value.as_ref().unwrap()["id"], "f:1");
        assert!(records[1].value.as_ref().unwrap_err().contains("malformed"));
        assert_eq!(records[1].raw, b"{oops");
        assert_eq!(records[2].value.as_ref().unwrap()["id"], "x");
    }

    #[test]
    fn csv_rows_become_events_with_quoted_fields() {
        let records = read(
            "id,ts,city,note\na,1700000000000,\"Zürich, CH\",\"say \"\"hi\"\"\nthere\"\n,,b\n",
            Format::Csv,
        );
        assert_eq!(records.len(), 2);
        let first = records[0].value.as_ref().unwrap();
        assert_eq!(first["id"], "a");
        assert_eq!(first["ts"], 1_700_000_000_000_i64);
        assert_eq!(first["payload"]["city"], "Zürich, CH");
        assert_eq!(first["payload"]["note"], "say \"hi\"\nthere");
        assert_eq!(
            records[1].line, 4,
            "the second row starts after the quoted newline"
        );
        assert!(records[1].value.as_ref().unwrap_err().contains("field(s)"));
    }

    #[test]
    fn formats_follow_names() {
        assert_eq!(Format::of_name("a.CSV.gz"), Format::Csv);
        assert_eq!(Format::of_name("a.csv.zst"), Format::Csv);
        assert_eq!(Format::of_name("a.ndjson.gz"), Format::Ndjson);
        assert_eq!(Format::of_name("a.jsonl"), Format::Ndjson);
    }
}
