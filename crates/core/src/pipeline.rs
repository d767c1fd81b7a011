//! A pipeline plan, checked: what to read, which events to keep, how to key and window
//! them, and what to compute.
//!
//! A plan is built once, at load, from a TOML definition or a SQL statement (in the
//! binary's config); its expressions are compiled ([`Expr`]) and its aggregates resolved
//! ([`AggregateFunction`]). Its [`PipelineSpec::fingerprint`] identifies what its state
//! means: the sources, lookups (what each matches on), filter, key, window and aggregates,
//! but none of the settings that only change when results appear (lateness,
//! out-of-orderness, intervals) or where a lookup's table is read from, so those may be
//! changed over stored state and the rest may not.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use sqlparser::ast::{Ident, ValueWithSpan, Visit, Visitor};

use crate::aggregate::AggregateFunction;
use crate::event::StreamName;
use crate::expr::Expr;
use crate::lookup::{Columns, LookupSpec};
use crate::partition::stable_hash64;
use crate::record::Projection;
use crate::results::{Column, ResultSchema};
use crate::value::{ColumnType, Value};
pub use crate::window::WindowSpec;

/// One key field of a pipeline: its column name and the expression computing it.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The column's name.
    pub name: String,
    /// What it is computed from.
    pub expr: Expr,
    /// The column's type: the expression's static type, else text.
    pub ty: ColumnType,
}

/// One aggregate of a pipeline: its column name, function and argument.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// The column's name.
    pub name: String,
    /// The function.
    pub function: Arc<dyn AggregateFunction>,
    /// Its argument; `None` for `count(*)`.
    pub argument: Option<Expr>,
}

/// A checked pipeline plan.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline's name (same rules as a stream name); also its consumer group.
    pub name: String,
    /// The streams it reads.
    pub sources: Vec<StreamName>,
    /// The reference tables its expressions read (`<lookup>.<field>`), in the order of
    /// [`crate::expr::Row::lookups`].
    pub lookups: Vec<LookupSpec>,
    /// Only events for which this is true are counted (all when `None`).
    pub filter: Option<Expr>,
    /// The key fields: one result row per window and distinct key.
    pub keys: Vec<KeySpec>,
    /// Its windows.
    pub window: WindowSpec,
    /// What it computes per window and key.
    pub aggregates: Vec<AggregateSpec>,
    /// How long after a window closed an event may still update its result.
    pub allowed_lateness: Duration,
    /// How far behind the newest event of a partition an event may be and still count.
    pub max_out_of_orderness: Duration,
    /// A partition with no new event for this long (processing time) does not hold the
    /// watermark back.
    pub idle_timeout: Duration,
    /// When set, once no source delivered an event for this long (processing time), the
    /// watermark moves past every open window, so that the last windows of a stream that
    /// went quiet become final.
    pub finalize_idle_after: Option<Duration>,
    /// How often results, state and offsets are committed.
    pub checkpoint_interval: Duration,
}

impl PipelineSpec {
    /// The payload fields its expressions read (filter, keys, aggregates, lookups): all
    /// the pipeline needs decoded of an event's payload.
    #[must_use]
    pub fn projection(&self) -> Projection {
        let exprs = self.lookups.iter().map(|l| &l.on).chain(self.expressions());
        Projection::new(exprs.flat_map(Expr::payload_paths).map(|path| &**path))
    }

    /// The columns of its lookups' rows that its expressions may read (filter, keys,
    /// aggregates; a lookup's `on` reads the event): all a lookup table keeps of them.
    ///
    /// A superset: every name the expressions write, each segment of a field and each
    /// string, as their canonical text reads back ([`Expr::canonical`]), so that a field
    /// read as `ads.campaign_id`, `ADS."Campaign"` or `ads['odd name']` is kept whichever
    /// of those names the expression compiler resolves to a lookup. Every column when a
    /// canonical text does not read back.
    #[must_use]
    pub fn lookup_columns(&self) -> Columns {
        let mut names = Names::default();
        for expr in self.expressions() {
            let Ok(ast) = crate::expr::parse(expr.canonical()) else {
                return Columns::All;
            };
            let ControlFlow::Continue(()) = ast.visit(&mut names);
        }
        Columns::Named(names.0)
    }

    /// The expressions evaluated per event, which may read the lookups: the filter, the
    /// keys and the aggregates' arguments.
    pub(crate) fn expressions(&self) -> impl Iterator<Item = &Expr> {
        self.filter
            .iter()
            .chain(self.keys.iter().map(|k| &k.expr))
            .chain(self.aggregates.iter().filter_map(|a| a.argument.as_ref()))
    }

    /// The plan of a pipeline as Tributary ran every one before aggregates could be
    /// declared: the number of events per event key in `window`, no filter.
    ///
    /// # Panics
    /// Never: the key expression and the aggregate are fixed and valid.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn counting(name: &str, sources: Vec<StreamName>, window: WindowSpec) -> Self {
        #[allow(clippy::unwrap_used)]
        let key = Expr::compile("key", &crate::expr::Scope::default()).unwrap();
        #[allow(clippy::unwrap_used)]
        let count = crate::aggregate::function("count", true, &[]).unwrap();
        Self {
            name: name.to_owned(),
            sources,
            lookups: Vec::new(),
            filter: None,
            keys: vec![KeySpec {
                name: "key".to_owned(),
                expr: key,
                ty: ColumnType::Text,
            }],
            window,
            aggregates: vec![AggregateSpec {
                name: "count".to_owned(),
                function: count,
                argument: None,
            }],
            allowed_lateness: Duration::ZERO,
            max_out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            finalize_idle_after: None,
            checkpoint_interval: Duration::from_secs(1),
        }
    }

    /// Whether this plan computes what every pipeline computed before aggregates could be
    /// declared (count(*) per event key in tumbling windows, no filter): the only plan that
    /// may resume from a state written then, which carries no fingerprint.
    #[must_use]
    pub fn is_legacy_count(&self) -> bool {
        matches!(self.window, WindowSpec::Tumbling { .. })
            && self.filter.is_none()
            && self.keys.len() == 1
            && self.keys[0].expr.is_event_key()
            && self.aggregates.len() == 1
            && self.aggregates[0].function.is_count_star()
    }

    /// The definition that the state depends on, as canonical text.
    #[must_use]
    pub fn definition(&self) -> String {
        let mut text = String::new();
        let mut sources: Vec<&str> = self.sources.iter().map(StreamName::as_str).collect();
        sources.sort_unstable();
        let _ = write!(text, "sources={sources:?};window={};", self.window);
        // What each lookup matches on, not where its table is read from nor how often:
        // a table may move without its pipeline starting over.
        for lookup in &self.lookups {
            let _ = write!(
                text,
                "lookup {}={}[{}];",
                lookup.name,
                lookup.on.canonical(),
                lookup.key_column
            );
        }
        if let Some(filter) = &self.filter {
            let _ = write!(text, "filter={};", filter.canonical());
        }
        for key in &self.keys {
            let _ = write!(text, "key {}={};", key.name, key.expr.canonical());
        }
        for aggregate in &self.aggregates {
            let argument = aggregate.argument.as_ref().map_or("*", Expr::canonical);
            let _ = write!(
                text,
                "aggregate {}={}[{argument}];",
                aggregate.name,
                aggregate.function.signature()
            );
        }
        text
    }

    /// A fingerprint of [`PipelineSpec::definition`], stored with the state.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", stable_hash64(&[self.definition().as_bytes()]))
    }

    /// The shape of its results table.
    #[must_use]
    pub fn schema(&self) -> ResultSchema {
        ResultSchema {
            pipeline: self.name.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| Column {
                    name: k.name.clone(),
                    ty: k.ty,
                })
                .collect(),
            aggregates: self
                .aggregates
                .iter()
                .map(|a| Column {
                    name: a.name.clone(),
                    ty: a.function.result_type(),
                })
                .collect(),
        }
    }

    /// Writes the key text of the event of `row` into `out` (cleared first): the single
    /// key field's text (`""` for NULL), or a JSON array of the fields' values; `""` for a
    /// pipeline without key fields.
    pub fn write_key(&self, row: &crate::expr::Row<'_>, out: &mut String) {
        out.clear();
        match self.keys.as_slice() {
            [] => {}
            [one] => match one.expr.eval(row) {
                // The usual key, a string, without the formatting machinery.
                Value::Str(text) => out.push_str(&text),
                other => {
                    let _ = write!(out, "{other}");
                }
            },
            many => {
                out.push('[');
                for (i, key) in many.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}", key.expr.eval(row).to_json());
                }
                out.push(']');
            }
        }
    }

    /// Whether every event of a key is read from one partition, so that shards per
    /// partition never compute the same result row: true when the key is the event's key,
    /// by which the log partitions.
    #[must_use]
    pub fn keyed_like_the_log(&self) -> bool {
        self.keys.len() == 1 && self.keys[0].expr.is_event_key()
    }
}

/// The names a syntax tree writes: its identifiers and its strings.
#[derive(Default)]
struct Names(BTreeSet<String>);

impl Visitor for Names {
    type Break = std::convert::Infallible;

    fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<Self::Break> {
        self.0.insert(ident.value.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<Self::Break> {
        self.0.extend(value.clone().into_string());
        ControlFlow::Continue(())
    }
}

/// Milliseconds in a duration, saturating.
#[must_use]
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A pipeline's live status, written to the cache by the engine after each committed
/// checkpoint (and when it is restored) and read by the gateway. Derived data: losing it
/// loses nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PipelineStatus {
    /// The pipeline.
    pub pipeline: String,
    /// Epoch of the last committed checkpoint.
    pub epoch: u64,
    /// The watermark at that checkpoint (`null` before any event).
    pub watermark: Option<crate::event::Timestamp>,
    /// Wall-clock time of the commit.
    pub committed_at: crate::event::Timestamp,
    /// Events dropped as late so far.
    pub late_events: u64,
    /// Duplicate events ignored so far.
    pub duplicates: u64,
    /// Events the filter left out so far.
    #[serde(default)]
    pub filtered: u64,
    /// The results written by that checkpoint, as JSON rows
    /// ([`crate::results::ResultRow::to_json`]).
    pub latest: Vec<serde_json::Value>,
}

impl PipelineStatus {
    /// The cache key of a pipeline's status when one task runs all of it (and when it was
    /// written whole, before parts).
    #[must_use]
    pub fn cache_key(pipeline: &str) -> String {
        format!("pipeline:{pipeline}:status")
    }

    /// The cache key of the status of one part of a pipeline (a shard, a repartition
    /// task): each part writes its own, wherever it runs, and readers merge them.
    #[must_use]
    pub fn part_key(pipeline: &str, part: &str) -> String {
        format!("pipeline:{pipeline}:status:{part}")
    }

    /// The cache key of the list of a pipeline's parts (a JSON array of part names).
    #[must_use]
    pub fn parts_key(pipeline: &str) -> String {
        format!("pipeline:{pipeline}:parts")
    }

    /// The status of a pipeline made of `parts`: epochs summed (the sum grows by one at
    /// every checkpoint of any part), the lowest watermark of the parts that have one,
    /// counters summed, the latest commit time, and the latest results of every part.
    /// `None` when no part has a status.
    #[must_use]
    pub fn merge(pipeline: &str, parts: Vec<PipelineStatus>) -> Option<Self> {
        let mut parts = parts.into_iter();
        let first = parts.next()?;
        let merged = parts.fold(first, |mut merged, part| {
            merged.epoch += part.epoch;
            merged.watermark = match (merged.watermark, part.watermark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            merged.committed_at = merged.committed_at.max(part.committed_at);
            merged.late_events += part.late_events;
            merged.duplicates += part.duplicates;
            merged.filtered += part.filtered;
            merged.latest.extend(part.latest);
            merged
        });
        Some(Self {
            pipeline: pipeline.to_owned(),
            ..merged
        })
    }

    /// Reads a pipeline's status from `cache`: the merge of its parts' when it has a list
    /// of parts, else the status written whole. `None` when nothing is cached.
    ///
    /// # Errors
    /// When the cache fails, or holds a value that is not a status.
    pub async fn load(
        cache: &dyn crate::ports::Cache,
        pipeline: &str,
    ) -> Result<Option<Self>, StatusError> {
        let parts_key = Self::parts_key(pipeline);
        let Some(parts) = cache.get(&parts_key).await? else {
            let key = Self::cache_key(pipeline);
            return match cache.get(&key).await? {
                Some(text) => decode(key, &text).map(Some),
                None => Ok(None),
            };
        };
        let names: Vec<String> = decode(parts_key, &parts)?;
        let mut statuses = Vec::with_capacity(names.len());
        for name in names {
            let key = Self::part_key(pipeline, &name);
            if let Some(text) = cache.get(&key).await? {
                statuses.push(decode(key, &text)?);
            }
        }
        Ok(Self::merge(pipeline, statuses))
    }
}

/// `text` decoded, or an error naming `key`.
fn decode<T: serde::de::DeserializeOwned>(key: String, text: &str) -> Result<T, StatusError> {
    serde_json::from_str(text).map_err(|source| StatusError::Undecodable { key, source })
}

/// Why [`PipelineStatus::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The cache did not answer.
    #[error(transparent)]
    Cache(#[from] crate::ports::PortError),
    /// A cached value is not what it should be.
    #[error("cached value {key} is not a pipeline status")]
    Undecodable {
        /// Its key.
        key: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}
