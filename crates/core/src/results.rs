//! A pipeline's results: typed rows, one per window and key, and the schema of their table.
//!
//! Each pipeline has its own results table (`results_{pipeline}` in PostgreSQL and SQLite)
//! whose columns follow its definition: `window_start`, `window_end`, `key` (the group key's
//! text), one typed column per key field, one per aggregate and, beside each aggregate, its
//! mergeable partial state (`{name}_partial`, bytes), then `revision`, `closed` and
//! `updated_at`. The row of (window start, key) is upserted at each checkpoint that changed
//! it, its revision going up by one each time; a session merge deletes the rows of the
//! sessions it replaced ([`ResultChange::Delete`]) in the same commit.

use serde::ser::SerializeMap;

use crate::event::Timestamp;
use crate::value::{ColumnType, Value};

/// Column names every results table has; key and aggregate names may not take them.
pub const RESERVED_COLUMNS: &[&str] = &[
    "pipeline",
    "window_start",
    "window_end",
    "key",
    "revision",
    "closed",
    "updated_at",
];

/// The longest table name: PostgreSQL's identifier limit, in bytes.
const MAX_TABLE_NAME: usize = 63;

/// The results table of `pipeline`: `results_{pipeline}` with `-` as `_`. A name longer than
/// [`MAX_TABLE_NAME`] bytes (PostgreSQL would silently cut it, and two long pipeline names
/// could then share a table) keeps its first 46 bytes and ends with `_` and the 16 hex
/// digits of a stable hash of the whole pipeline name.
#[must_use]
pub fn results_table(pipeline: &str) -> String {
    let name = format!("results_{}", pipeline.replace('-', "_"));
    if name.len() <= MAX_TABLE_NAME {
        return name;
    }
    let hash = crate::partition::stable_hash64(&[pipeline.as_bytes()]);
    let mut end = MAX_TABLE_NAME - 17;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{hash:016x}", &name[..end])
}

/// One typed column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    /// Its name: `[a-z_][a-z0-9_]*`, at most 48 bytes, none of [`RESERVED_COLUMNS`].
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
}

/// The shape of a pipeline's results table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResultSchema {
    /// The pipeline.
    pub pipeline: String,
    /// The key fields, in order. A single key field named `key` is the `key` column itself
    /// (a pipeline keyed by the event's key, as every pipeline was before typed results).
    pub keys: Vec<Column>,
    /// The aggregates, in order; each also has a partial-state column.
    pub aggregates: Vec<Column>,
}

impl ResultSchema {
    /// The results table's name: [`results_table`] of the pipeline.
    #[must_use]
    pub fn table(&self) -> String {
        results_table(&self.pipeline)
    }

    /// The key columns stored beside `key` (all of them, but a single one named `key`).
    pub fn key_columns(&self) -> impl Iterator<Item = (usize, &Column)> {
        let implicit = self.keys.len() == 1 && self.keys[0].name == "key";
        self.keys.iter().enumerate().filter(move |_| !implicit)
    }

    /// The partial-state column of aggregate `column`.
    #[must_use]
    pub fn partial_column(column: &Column) -> String {
        format!("{}_partial", column.name)
    }
}

/// One window's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The pipeline that computed it.
    pub pipeline: String,
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// The group key's text: the key field's text for one field (`""` for `NULL`), a JSON
    /// array of the fields' values for several.
    pub key: String,
    /// The key fields' values, in the schema's order.
    pub keys: Vec<Value<'static>>,
    /// The aggregates' values, in the schema's order.
    pub values: Vec<Value<'static>>,
    /// The aggregates' partial states, in the schema's order.
    pub partials: Vec<Vec<u8>>,
    /// 1 when first written, +1 at each later write of the row.
    pub revision: u64,
    /// Whether the watermark has passed the window's end: final, unless a late event within
    /// the allowed lateness updates it (a new revision).
    pub closed: bool,
    /// When the store last wrote the row (`None` before it is stored).
    pub updated_at: Option<Timestamp>,
}

impl ResultRow {
    /// The row as a JSON object with typed values: `pipeline`, `window_start`,
    /// `window_end`, `key`, each key field and each aggregate by name, `revision`, `closed`
    /// and (when stored) `updated_at`. Partials are not shown.
    #[must_use]
    pub fn to_json(&self, schema: &ResultSchema) -> serde_json::Value {
        serde_json::to_value(RowJson { row: self, schema }).unwrap_or_default()
    }
}

/// A row rendered by its schema.
struct RowJson<'a> {
    row: &'a ResultRow,
    schema: &'a ResultSchema,
}

impl serde::Serialize for RowJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.row;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("pipeline", &row.pipeline)?;
        map.serialize_entry("window_start", &row.window_start)?;
        map.serialize_entry("window_end", &row.window_end)?;
        map.serialize_entry("key", &row.key)?;
        for (i, column) in self.schema.key_columns() {
            let value = row.keys.get(i).map(Value::to_json).unwrap_or_default();
            map.serialize_entry(&column.name, &value)?;
        }
        for (column, value) in self.schema.aggregates.iter().zip(&row.values) {
            map.serialize_entry(&column.name, &value.to_json())?;
        }
        map.serialize_entry("revision", &row.revision)?;
        map.serialize_entry("closed", &row.closed)?;
        if let Some(at) = row.updated_at {
            map.serialize_entry("updated_at", &at)?;
        }
        map.end()
    }
}

/// What a checkpoint does to one row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultChange {
    /// Insert or replace the row of (window start, key).
    Upsert(ResultRow),
    /// Delete the row of (window start, key): a session merged into another.
    Delete {
        /// The replaced session's start.
        window_start: Timestamp,
        /// Its key's text.
        key: String,
    },
}

/// The results a checkpoint writes, with the schema of their table.
#[derive(Debug, Clone, Copy)]
pub struct ResultWrite<'a> {
    /// The table's shape.
    pub schema: &'a ResultSchema,
    /// The changes, applied in order.
    pub changes: &'a [ResultChange],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_tables_fit_postgresql_identifiers() {
        assert_eq!(results_table("page-views_2"), "results_page_views_2");
        let long = "a".repeat(64);
        let table = results_table(&long);
        assert_eq!(table.len(), 63);
        assert!(table.starts_with("results_aaaa"));
        assert_ne!(table, results_table(&format!("{}b", "a".repeat(63))));
        assert_eq!(results_table(&"a".repeat(55)).len(), 63);
    }
}
