//! Lookup tables: the reference data a pipeline enriches its events with (the join of the
//! Yahoo Streaming Benchmark, ad id → campaign id).
//!
//! The contract:
//!
//! - A lookup ([`LookupSpec`]) names a reference table, an expression `on` over the event,
//!   and the table's column holding the lookup key. An event's row is the one whose key
//!   column's text equals the text of `on`'s value (as [`Value`]'s `Display` writes it, so
//!   the number `42` and the string `"42"` find the same row). No match, or `on` `NULL`:
//!   the lookup is `NULL`, and each of its fields reads as `NULL`.
//! - A table is built from rows ([`LookupTable::build`]): when two rows have the same key,
//!   the last one wins (and is counted); a row whose key is `NULL`, missing, an object or
//!   an array is left out (and counted).
//! - A table keeps of each row only the columns its pipeline's expressions may read
//!   ([`Columns`], from [`crate::pipeline::PipelineSpec::lookup_columns`]), so that they
//!   read the same fields while a row is smaller: with one column, reading it compares its
//!   name once instead of hashing it (a row is a `serde_json::Map`, an `IndexMap` hashed
//!   with SipHash once it holds two entries).
//! - The rows of a file are parsed here, from its bytes, with no I/O: CSV ([`parse_csv`]:
//!   a header line naming the columns, then one row per line; a cell written as a JSON
//!   number, such as `42`, `-1.5` or `1e3`, becomes a number, an empty cell is `NULL`,
//!   anything else, such as `007` or `+1`, is text) and NDJSON ([`parse_ndjson`]: one JSON
//!   object per line, blank lines skipped). A malformed line is an error naming it.
//! - A table has at most [`MAX_ROWS`] rows, and a file at most [`MAX_FILE_BYTES`] bytes.

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::expr::{EventRef, Expr, Row};
use crate::value::Value;

/// A row of a reference table: its columns, by name.
pub type ReferenceRow = serde_json::Map<String, serde_json::Value>;

/// The most rows a lookup table may have.
pub const MAX_ROWS: usize = 10_000_000;

/// The largest file a lookup table may be read from: 1 GiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// One lookup of a pipeline, checked.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// Its name: expressions read its fields as `<name>.<field>`.
    pub name: String,
    /// The expression over the event whose text is looked up.
    pub on: Expr,
    /// The table's column holding the lookup key.
    pub key_column: String,
    /// How often the table is loaded again; zero: never.
    pub refresh: Duration,
    /// Where the table is read from.
    pub source: LookupSource,
}

impl LookupSpec {
    /// The text `on` gives for `event`, written into `buffer` when it is not a string of
    /// the event; `None` when it is `NULL`.
    fn key<'a>(
        &self,
        event: EventRef<'a>,
        buffer: &'a mut String,
    ) -> Option<std::borrow::Cow<'a, str>> {
        let value = self.on.eval(&Row {
            event,
            lookups: &[],
        });
        match value {
            Value::Null => None,
            Value::Str(text) => Some(text),
            other => {
                buffer.clear();
                let _ = write!(buffer, "{other}");
                Some(std::borrow::Cow::Borrowed(buffer.as_str()))
            }
        }
    }
}

/// Where a reference table is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupSource {
    /// A file, read whole at each load.
    File {
        /// Its path (relative to the working directory, unless absolute).
        path: PathBuf,
        /// How its rows are written.
        format: FileFormat,
    },
    /// A PostgreSQL table (or view), read whole at each load.
    Postgres {
        /// Connection URL.
        url: String,
        /// The table: `name` or `schema.name`.
        table: String,
    },
}

/// Whether `table` names a PostgreSQL table as a lookup may: `name` or `schema.name`, each
/// `[A-Za-z_][A-Za-z0-9_]*` (so that it can be quoted without escaping).
#[must_use]
pub fn is_table_name(table: &str) -> bool {
    let mut parts = table.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) => is_identifier(name),
        (Some(schema), Some(name), None) => is_identifier(schema) && is_identifier(name),
        _ => false,
    }
}

/// Whether `name` is `[A-Za-z_][A-Za-z0-9_]*`.
#[must_use]
pub fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How a file's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line (`.csv`).
    Csv,
    /// One JSON object per line (`.ndjson`, `.jsonl`).
    Ndjson,
}

impl FileFormat {
    /// The format of a file, from its extension: `.csv`, `.ndjson` or `.jsonl` (in any
    /// case); `None` for any other.
    #[must_use]
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// Why a reference table's rows cannot be read. The table's author's to fix.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A line is not valid CSV (not UTF-8, or not as many cells as the header).
    #[error("line {line}: malformed CSV")]
    Csv {
        /// The line, from 1.
        line: u64,
        /// The CSV reader's error.
        #[source]
        source: csv::Error,
    },
    /// The header names a column twice.
    #[error("line {line}: column `{column}` is named twice in the header")]
    DuplicateColumn {
        /// The header's line.
        line: u64,
        /// The column.
        column: String,
    },
    /// A line is not one JSON object.
    #[error("line {line}: not a JSON object")]
    Json {
        /// The line, from 1.
        line: u64,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// More rows than [`MAX_ROWS`].
    #[error("the table has more than {max} rows")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// A file larger than [`MAX_FILE_BYTES`].
    #[error("the file has {bytes} bytes, more than the {max} a lookup table may be read from")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

/// Checks a file's size against [`MAX_FILE_BYTES`].
///
/// # Errors
/// [`TableError::TooLarge`] when it is larger.
pub fn check_file_size(bytes: u64) -> Result<(), TableError> {
    if bytes > MAX_FILE_BYTES {
        return Err(TableError::TooLarge {
            bytes,
            max: MAX_FILE_BYTES,
        });
    }
    Ok(())
}

/// Parses a file's rows in `format`.
///
/// # Errors
/// As [`parse_csv`] and [`parse_ndjson`].
pub fn parse_rows(format: FileFormat, bytes: &[u8]) -> Result<Vec<ReferenceRow>, TableError> {
    match format {
        FileFormat::Csv => parse_csv(bytes),
        FileFormat::Ndjson => parse_ndjson(bytes),
    }
}

/// Parses CSV: a header line naming the columns (trimmed), then one row per line. A cell
/// written as a JSON number becomes a number, an empty cell `NULL`, any other cell text.
///
/// # Errors
/// A line that is not UTF-8 or has not as many cells as the header, a column named twice,
/// more than [`MAX_ROWS`] rows or more than [`MAX_FILE_BYTES`] bytes.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<ReferenceRow>, TableError> {
    check_file_size(bytes.len() as u64)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::Headers)
        .from_reader(bytes);
    let csv_error = |source: csv::Error, fallback: u64| TableError::Csv {
        line: source.position().map_or(fallback, csv::Position::line),
        source,
    };
    let headers = reader.headers().map_err(|e| csv_error(e, 1))?.clone();
    let header_line = headers.position().map_or(1, csv::Position::line);
    for (i, column) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|c| c == column) {
            return Err(TableError::DuplicateColumn {
                line: header_line,
                column: column.to_owned(),
            });
        }
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut line = header_line;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(e, line + 1)),
        }
        line = record.position().map_or(line + 1, csv::Position::line);
        if rows.len() == MAX_ROWS {
            return Err(TableError::TooManyRows { max: MAX_ROWS });
        }
        rows.push(
            headers
                .iter()
                .zip(record.iter())
                .map(|(column, cell)| (column.to_owned(), cell_value(cell)))
                .collect(),
        );
    }
    Ok(rows)
}

/// A CSV cell's value: a number when written as a JSON number (an integer only when it
/// fits 64 bits: a longer one, such as an id, stays text), `NULL` when empty, else text.
fn cell_value(cell: &str) -> serde_json::Value {
    if cell.is_empty() {
        return serde_json::Value::Null;
    }
    if is_json_number(cell) {
        if let Ok(i) = cell.parse::<i64>() {
            return i.into();
        }
        let integral = !cell.contains(['.', 'e', 'E']);
        if let Some(number) = cell
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && !integral)
            .and_then(serde_json::Number::from_f64)
        {
            return serde_json::Value::Number(number);
        }
    }
    serde_json::Value::String(cell.to_owned())
}

/// Whether `text` is a number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let leading_zero = bytes.get(i) == Some(&b'0');
    let whole = digits(&mut i);
    if whole == 0 || (leading_zero && whole > 1) {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

/// Parses NDJSON: one JSON object per line; blank lines are skipped.
///
/// # Errors
/// A line that is not one JSON object, more than [`MAX_ROWS`] rows or more than
/// [`MAX_FILE_BYTES`] bytes.
pub fn parse_ndjson(bytes: &[u8]) -> Result<Vec<ReferenceRow>, TableError> {
    check_file_size(bytes.len() as u64)?;
    let mut rows = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(TableError::TooManyRows { max: MAX_ROWS });
        }
        rows.push(parse_json_row(i as u64 + 1, line)?);
    }
    Ok(rows)
}

/// Parses one row written as a JSON object, found at `line`.
///
/// # Errors
/// [`TableError::Json`] when it is not one JSON object.
pub fn parse_json_row(line: u64, text: &[u8]) -> Result<ReferenceRow, TableError> {
    serde_json::from_slice(text).map_err(|source| TableError::Json { line, source })
}

/// The columns of its reference rows a pipeline may read: all that a table keeps of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Columns {
    /// Every column.
    All,
    /// These columns only.
    Named(BTreeSet<String>),
}

impl Columns {
    /// `row` with only these columns, in its order.
    fn keep(&self, row: ReferenceRow) -> ReferenceRow {
        match self {
            Self::All => row,
            Self::Named(names) => row
                .into_iter()
                .filter(|(column, _)| names.contains(column))
                .collect(),
        }
    }
}

/// A reference table, indexed by the text of its key column.
#[derive(Debug, Default)]
pub struct LookupTable {
    rows: HashMap<String, ReferenceRow>,
    duplicates: usize,
    without_key: usize,
}

impl LookupTable {
    /// Indexes `rows` by the text of their `key_column`, keeping of each only `columns`:
    /// of two rows with the same key, the last wins; a row whose key is `NULL`, missing,
    /// an object or an array is left out.
    #[must_use]
    pub fn build(rows: Vec<ReferenceRow>, key_column: &str, columns: &Columns) -> Self {
        let mut table = Self {
            rows: HashMap::with_capacity(rows.len()),
            ..Self::default()
        };
        for row in rows {
            let key = match row.get(key_column).map(Value::from_json) {
                None | Some(Value::Null) => None,
                Some(value) => Some(value.to_string()),
            };
            let Some(key) = key else {
                table.without_key += 1;
                continue;
            };
            if table.rows.insert(key, columns.keep(row)).is_some() {
                table.duplicates += 1;
            }
        }
        table
    }

    /// The row whose key is `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&ReferenceRow> {
        self.rows.get(key)
    }

    /// How many rows it holds (one per key).
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no row.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How many rows were replaced by a later one with the same key.
    #[must_use]
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// How many rows were left out for want of a key.
    #[must_use]
    pub fn without_key(&self) -> usize {
        self.without_key
    }
}

/// A pipeline's lookups with the tables loaded for them, as one batch of events sees
/// them: cheap to clone (reference counts), so that a reload may replace a table while a
/// batch still reads the one it started with.
#[derive(Debug, Clone, Default)]
pub struct LookupTables {
    specs: Arc<[LookupSpec]>,
    tables: Vec<Arc<LookupTable>>,
}

impl LookupTables {
    /// The lookups `specs` with their `tables`, in the same order.
    ///
    /// # Panics
    /// When there are not as many tables as lookups: a bug of the caller.
    #[must_use]
    pub fn new(specs: Arc<[LookupSpec]>, tables: Vec<Arc<LookupTable>>) -> Self {
        assert_eq!(specs.len(), tables.len(), "one table per lookup");
        Self { specs, tables }
    }

    /// An enricher reading these tables.
    #[must_use]
    pub fn enricher(&self) -> Enricher<'_> {
        Enricher {
            tables: self,
            key: String::new(),
            rows: Vec::with_capacity(self.tables.len()),
        }
    }
}

/// Looks up each event's rows in a pipeline's tables, reusing its buffers from one event
/// to the next.
#[derive(Debug)]
pub struct Enricher<'t> {
    tables: &'t LookupTables,
    key: String,
    rows: Vec<Option<&'t ReferenceRow>>,
}

impl<'t> Enricher<'t> {
    /// The rows looked up for `event`, one per lookup, in order (what [`Row::lookups`]
    /// holds); empty when the pipeline has no lookup.
    pub fn rows<'e>(&mut self, event: impl Into<EventRef<'e>>) -> &[Option<&'t ReferenceRow>] {
        let event = event.into();
        self.rows.clear();
        let tables: &'t LookupTables = self.tables;
        for (spec, table) in tables.specs.iter().zip(&tables.tables) {
            let row = spec
                .key(event, &mut self.key)
                .and_then(|key| table.get(&key));
            self.rows.push(row);
        }
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::expr::Scope;
    use crate::{Event, EventId, StreamName, Timestamp};

    fn row(value: serde_json::Value) -> ReferenceRow {
        match value {
            serde_json::Value::Object(map) => map,
            other => panic!("{other} is not an object"),
        }
    }

    #[test]
    fn csv_cells_are_text_numbers_or_null() {
        let csv = "ad_id, campaign_id ,score,note\n\
                   a1,c1,1.5,hello\n\
                   42,007,-3,\"a, b\"\n\
                   99999999999999999999,+1,1e3,\n";
        let rows = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(
            rows,
            [
                row(json!({"ad_id": "a1", "campaign_id": "c1", "score": 1.5, "note": "hello"})),
                row(json!({"ad_id": 42, "campaign_id": "007", "score": -3, "note": "a, b"})),
                row(json!({
                    "ad_id": "99999999999999999999",
                    "campaign_id": "+1",
                    "score": 1000.0,
                    "note": null
                })),
            ]
        );
    }

    #[test]
    fn json_numbers_are_recognized_exactly() {
        for yes in ["0", "-0", "12", "-1.5", "1e3", "1E-3", "0.25", "2.5e+10"] {
            assert!(is_json_number(yes), "{yes}");
        }
        for no in [
            "", "-", "01", "+1", "1.", ".5", "1e", "1e+", "0x10", "inf", "NaN", " 1", "1 ",
        ] {
            assert!(!is_json_number(no), "{no}");
        }
        assert_eq!(cell_value("1e400"), json!("1e400"));
    }

    #[test]
    fn a_utf8_bom_and_crlf_line_ends_are_read() {
        let rows = parse_csv(b"\xEF\xBB\xBFid,name\r\n1,a\r\n2,b\r\n").unwrap();
        assert_eq!(
            rows,
            [
                row(json!({"id": 1, "name": "a"})),
                row(json!({"id": 2, "name": "b"}))
            ]
        );
        assert!(parse_csv(b"").unwrap().is_empty());
        assert!(parse_csv(b"id,name\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_csv_names_its_line() {
        let err = parse_csv(b"id,name\n1,a\n2,b,extra\n3,c\n").unwrap_err();
        assert!(matches!(err, TableError::Csv { line: 3, .. }), "{err:?}");
        assert_eq!(err.to_string(), "line 3: malformed CSV");
        let err = parse_csv(b"id,name\n1,a\n2,\xFF\n").unwrap_err();
        assert!(matches!(err, TableError::Csv { line: 3, .. }), "{err:?}");
        let err = parse_csv(b"id,name,id\n1,a,b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: column `id` is named twice in the header"
        );
    }

    #[test]
    fn ndjson_rows_are_objects_one_per_line() {
        let text = b"{\"id\": 1, \"tags\": [\"x\"]}\n\n  \r\n{\"id\": \"2\", \"n\": null}\r\n";
        let rows = parse_ndjson(text).unwrap();
        assert_eq!(
            rows,
            [
                row(json!({"id": 1, "tags": ["x"]})),
                row(json!({"id": "2", "n": null}))
            ]
        );
        let err = parse_ndjson(b"{\"id\": 1}\n[1, 2]\n").unwrap_err();
        assert!(matches!(err, TableError::Json { line: 2, .. }), "{err:?}");
        let err = parse_ndjson(b"{\"id\": 1}\n\n{\"id\": \n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: not a JSON object");
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(check_file_size(MAX_FILE_BYTES).is_ok());
        let err = check_file_size(MAX_FILE_BYTES + 1).unwrap_err();
        assert!(matches!(err, TableError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn formats_follow_the_extension() {
        let format = |p: &str| FileFormat::from_path(std::path::Path::new(p));
        assert_eq!(format("data/ads.csv"), Some(FileFormat::Csv));
        assert_eq!(format("ADS.CSV"), Some(FileFormat::Csv));
        assert_eq!(format("x.ndjson"), Some(FileFormat::Ndjson));
        assert_eq!(format("x.jsonl"), Some(FileFormat::Ndjson));
        assert_eq!(format("x.json"), None);
        assert_eq!(format("csv"), None);
    }

    #[test]
    fn tables_index_rows_by_key_text_and_the_last_duplicate_wins() {
        let rows = vec![
            row(json!({"ad": 1, "campaign": "a"})),
            row(json!({"ad": "2", "campaign": "b"})),
            row(json!({"ad": 1, "campaign": "c"})),
            row(json!({"ad": null, "campaign": "d"})),
            row(json!({"campaign": "e"})),
            row(json!({"ad": [1], "campaign": "f"})),
            row(json!({"ad": 2.5, "campaign": "g"})),
        ];
        let table = LookupTable::build(rows, "ad", &Columns::All);
        assert_eq!(table.len(), 3);
        assert_eq!(table.duplicates(), 1);
        assert_eq!(table.without_key(), 3);
        assert_eq!(table.get("1").unwrap()["campaign"], "c");
        assert_eq!(table.get("2").unwrap()["campaign"], "b");
        assert_eq!(table.get("2.5").unwrap()["campaign"], "g");
        assert!(table.get("3").is_none());
    }

    #[test]
    fn tables_keep_only_the_columns_read_but_key_rows_by_the_whole_row() {
        let rows = vec![
            row(json!({"ad": 1, "campaign": "a", "geo": {"country": "fr"}, "note": "x"})),
            row(json!({"note": "y", "ad": 2})),
        ];
        let read = Columns::Named(["campaign", "geo", "other"].map(str::to_owned).into());
        let table = LookupTable::build(rows, "ad", &read);
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.get("1").unwrap(),
            &row(json!({"campaign": "a", "geo": {"country": "fr"}}))
        );
        assert!(table.get("2").unwrap().is_empty());
    }

    #[test]
    fn an_event_finds_its_row_by_the_text_of_on() {
        let spec = |on: &str| LookupSpec {
            name: "ads".to_owned(),
            on: Expr::compile(on, &Scope::default()).unwrap(),
            key_column: "ad".to_owned(),
            refresh: Duration::ZERO,
            source: LookupSource::File {
                path: "ads.csv".into(),
                format: FileFormat::Csv,
            },
        };
        let table = Arc::new(LookupTable::build(
            vec![
                row(json!({"ad": 1, "campaign": "a"})),
                row(json!({"ad": "x", "campaign": "b"})),
            ],
            "ad",
            &Columns::All,
        ));
        let tables = LookupTables::new(
            vec![spec("payload.ad"), spec("key")].into(),
            vec![Arc::clone(&table), table],
        );
        let event = |ad: serde_json::Value, key: Option<&str>| Event {
            id: EventId::new("e").unwrap(),
            stream: StreamName::new("s").unwrap(),
            ts: Timestamp::from_millis(0),
            key: key.map(str::to_owned),
            payload: row(json!({ "ad": ad })),
        };
        let mut enricher = tables.enricher();
        let campaigns = |rows: &[Option<&ReferenceRow>]| -> Vec<Option<String>> {
            rows.iter()
                .map(|r| r.map(|r| r["campaign"].as_str().unwrap().to_owned()))
                .collect()
        };
        let found = campaigns(enricher.rows(&event(json!(1), Some("x"))));
        assert_eq!(found, [Some("a".to_owned()), Some("b".to_owned())]);
        let found = campaigns(enricher.rows(&event(json!("1"), Some("1"))));
        assert_eq!(found, [Some("a".to_owned()), Some("a".to_owned())]);
        let found = campaigns(enricher.rows(&event(json!(null), None)));
        assert_eq!(found, [None, None]);
        let found = campaigns(enricher.rows(&event(json!(2), Some("y"))));
        assert_eq!(found, [None, None]);
    }
}
