//! A pipeline's lookup tables, loaded when its task starts and reloaded in the background.
//!
//! The contract:
//!
//! - [`Lookups::load`] reads every table of the pipeline before it processes an event,
//!   keeping of each row only the columns the pipeline may read; a
//!   table that cannot be read fails the task's start with the source's error (unavailable:
//!   the task restarts with backoff; refused, such as a missing file or a malformed line:
//!   it restarts too, logged at error level), naming the lookup and the pipeline.
//! - Every `refresh` after a load finished (never when it is zero), [`Lookups::maybe_refresh`],
//!   called between batches, starts a reload on a task of its own, and swaps the new table
//!   in at the first call after it finished. The pipeline goes on with the previous table
//!   while the new one is read and built (parsing and indexing run on blocking threads),
//!   and keeps it when the reload fails, with a warning carrying the error.
//! - [`Lookups::tables`] is a snapshot for one batch: every event of a batch sees the same
//!   tables. An event is looked up when it is processed: a replay after a restart reads the
//!   tables as they are then (see docs/ARCHITECTURE.md §5).

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tributary_core::lookup::{Columns, LookupSpec, LookupTable, LookupTables};
use tributary_core::ports::{BoxError, PortError, ReferenceSource};

use crate::EngineError;

/// The lookups of one pipeline (or shard) and their current tables.
#[derive(Debug)]
pub(crate) struct Lookups {
    pipeline: String,
    specs: Arc<[LookupSpec]>,
    /// The columns its tables keep.
    columns: Arc<Columns>,
    entries: Vec<Entry>,
}

/// One lookup's table and its reload.
#[derive(Debug)]
struct Entry {
    source: Arc<dyn ReferenceSource>,
    table: Arc<LookupTable>,
    /// When the next reload starts; `None` while one runs, or when it never reloads.
    due: Option<Instant>,
    reload: Option<Reload>,
}

/// A reload running on a task of its own.
#[derive(Debug)]
struct Reload {
    outcome: oneshot::Receiver<Result<LookupTable, EngineError>>,
    task: AbortHandle,
}

impl Lookups {
    /// Loads the table of each of `specs` from its source in `sources` (in the same order),
    /// keeping `columns` of its rows.
    ///
    /// # Errors
    /// The first table that cannot be read ([`EngineError::Port`], its cause naming the
    /// lookup), or a panic while building it.
    pub(crate) async fn load(
        pipeline: &str,
        specs: &[LookupSpec],
        columns: Columns,
        sources: &[Arc<dyn ReferenceSource>],
    ) -> Result<Self, EngineError> {
        debug_assert_eq!(specs.len(), sources.len(), "one source per lookup");
        let columns = Arc::new(columns);
        let mut entries = Vec::with_capacity(specs.len());
        for (spec, source) in specs.iter().zip(sources) {
            let table = load_table(pipeline, spec, &columns, source.as_ref()).await?;
            loaded(pipeline, spec, &table, false);
            entries.push(Entry {
                source: Arc::clone(source),
                table: Arc::new(table),
                due: next_refresh(spec),
                reload: None,
            });
        }
        Ok(Self {
            pipeline: pipeline.to_owned(),
            specs: specs.into(),
            columns,
            entries,
        })
    }

    /// Swaps in the tables whose reload finished, and starts the reloads that are due.
    /// Never waits.
    pub(crate) fn maybe_refresh(&mut self) {
        let now = Instant::now();
        for (spec, entry) in self.specs.iter().zip(&mut self.entries) {
            if let Some(reload) = &mut entry.reload {
                let outcome = match reload.outcome.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => continue,
                    Ok(outcome) => Some(outcome),
                    // The reload's task ended without an outcome: it panicked.
                    Err(oneshot::error::TryRecvError::Closed) => None,
                };
                entry.reload = None;
                entry.due = next_refresh(spec);
                let pipeline = self.pipeline.as_str();
                match outcome {
                    Some(Ok(table)) => {
                        loaded(pipeline, spec, &table, true);
                        entry.table = Arc::new(table);
                    }
                    Some(Err(err)) => tracing::warn!(
                        pipeline,
                        lookup = %spec.name,
                        error = &err as &dyn std::error::Error,
                        "lookup table not reloaded; the previous one stays"
                    ),
                    None => tracing::warn!(
                        pipeline,
                        lookup = %spec.name,
                        "lookup table reload panicked; the previous one stays"
                    ),
                }
            } else if entry.due.is_some_and(|due| now >= due) {
                entry.due = None;
                entry.reload = Some(reload(&self.pipeline, spec, &self.columns, &entry.source));
            }
        }
    }

    /// The current tables, for one batch.
    pub(crate) fn tables(&self) -> LookupTables {
        LookupTables::new(
            Arc::clone(&self.specs),
            self.entries.iter().map(|e| Arc::clone(&e.table)).collect(),
        )
    }
}

impl Drop for Lookups {
    /// A run that ends leaves no reload behind.
    fn drop(&mut self) {
        for entry in &self.entries {
            if let Some(reload) = &entry.reload {
                reload.task.abort();
            }
        }
    }
}

/// Logs a table just loaded (`reload`: not the first time).
fn loaded(pipeline: &str, spec: &LookupSpec, table: &LookupTable, reload: bool) {
    tracing::info!(
        pipeline,
        lookup = %spec.name,
        reload,
        rows = table.len(),
        duplicates = table.duplicates(),
        without_key = table.without_key(),
        "lookup table loaded"
    );
}

/// When the lookup's next reload starts after one that finished now.
fn next_refresh(spec: &LookupSpec) -> Option<Instant> {
    (!spec.refresh.is_zero()).then(|| Instant::now() + spec.refresh)
}

/// Starts reloading `spec`'s table from `source` on a task of its own.
fn reload(
    pipeline: &str,
    spec: &LookupSpec,
    columns: &Arc<Columns>,
    source: &Arc<dyn ReferenceSource>,
) -> Reload {
    let (sender, outcome) = oneshot::channel();
    let (pipeline, spec) = (pipeline.to_owned(), spec.clone());
    let (columns, source) = (Arc::clone(columns), Arc::clone(source));
    let task = tokio::spawn(async move {
        let table = load_table(&pipeline, &spec, &columns, source.as_ref()).await;
        // The pipeline's run may have ended meanwhile: nobody waits any more.
        let _ = sender.send(table);
    });
    Reload {
        outcome,
        task: task.abort_handle(),
    }
}

/// Reads `spec`'s table from `source` and indexes it, keeping `columns` (on a blocking
/// thread: a large table takes longer than an await may).
async fn load_table(
    pipeline: &str,
    spec: &LookupSpec,
    columns: &Arc<Columns>,
    source: &dyn ReferenceSource,
) -> Result<LookupTable, EngineError> {
    let rows = source
        .load()
        .await
        .map_err(|err| in_lookup(err, pipeline, &spec.name))?;
    let (key_column, columns) = (spec.key_column.clone(), Arc::clone(columns));
    tokio::task::spawn_blocking(move || LookupTable::build(rows, &key_column, &columns))
        .await
        .map_err(|source| EngineError::Panicked {
            task: pipeline.to_owned(),
            source,
        })
}

/// Which lookup a source's error happened in: the cause of the error it is wrapped in.
#[derive(Debug, thiserror::Error)]
#[error("lookup {lookup} of pipeline {pipeline}")]
struct InLookup {
    pipeline: String,
    lookup: String,
    #[source]
    source: BoxError,
}

/// `error` of the source of `lookup`, with the lookup named in its causes; its kind (and so
/// whether a retry may help) unchanged.
fn in_lookup(error: PortError, pipeline: &str, lookup: &str) -> EngineError {
    let wrap = |source: BoxError| -> BoxError {
        Box::new(InLookup {
            pipeline: pipeline.to_owned(),
            lookup: lookup.to_owned(),
            source,
        })
    };
    EngineError::Port(match error {
        PortError::Unavailable { system, source } => PortError::Unavailable {
            system,
            source: wrap(source),
        },
        PortError::Refused { system, source } => PortError::Refused {
            system,
            source: wrap(source),
        },
        PortError::Corrupt { system, source } => PortError::Corrupt {
            system,
            source: wrap(source),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;
    use tributary_core::expr::{Expr, Scope};
    use tributary_core::lookup::{FileFormat, LookupSource, ReferenceRow};
    use tributary_core::{Event, EventId, StreamName, Timestamp};

    use super::*;

    /// A source whose loads follow a script: each gives its rows (`campaign` of ad `a1`) or
    /// fails.
    #[derive(Debug)]
    struct Scripted {
        script: Mutex<std::vec::IntoIter<Result<&'static str, PortError>>>,
    }

    impl Scripted {
        fn source(script: Vec<Result<&'static str, PortError>>) -> Arc<dyn ReferenceSource> {
            Arc::new(Self {
                script: Mutex::new(script.into_iter()),
            })
        }
    }

    #[async_trait::async_trait]
    impl ReferenceSource for Scripted {
        async fn load(&self) -> Result<Vec<ReferenceRow>, PortError> {
            let next = self.script.lock().unwrap().next();
            let campaign = next.expect("no more loads scripted")?;
            let row = json!({"ad": "a1", "campaign": campaign});
            Ok(vec![row.as_object().unwrap().clone()])
        }
    }

    fn spec(refresh: Duration) -> LookupSpec {
        LookupSpec {
            name: "ads".to_owned(),
            on: Expr::compile("key", &Scope::default()).unwrap(),
            key_column: "ad".to_owned(),
            refresh,
            source: LookupSource::File {
                path: "ads.csv".into(),
                format: FileFormat::Csv,
            },
        }
    }

    fn campaign(lookups: &Lookups) -> Option<String> {
        let event = Event {
            id: EventId::new("e").unwrap(),
            stream: StreamName::new("s").unwrap(),
            ts: Timestamp::from_millis(0),
            key: Some("a1".to_owned()),
            payload: serde_json::Map::new(),
        };
        let tables = lookups.tables();
        let mut enricher = tables.enricher();
        enricher.rows(&event)[0].map(|row| row["campaign"].as_str().unwrap().to_owned())
    }

    /// Calls `maybe_refresh` until the reload it started finished.
    async fn refresh(lookups: &mut Lookups) {
        lookups.maybe_refresh();
        while lookups.entries[0].reload.is_some() {
            tokio::task::yield_now().await;
            lookups.maybe_refresh();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tables_reload_when_due_and_a_failed_reload_keeps_the_previous_one() {
        let source = Scripted::source(vec![
            Ok("c1"),
            Err(PortError::unavailable("test", "down")),
            Ok("c2"),
        ]);
        let specs = [spec(Duration::from_secs(60))];
        let mut lookups = Lookups::load("p", &specs, Columns::All, &[source])
            .await
            .unwrap();
        assert_eq!(campaign(&lookups).as_deref(), Some("c1"));
        // Not due yet.
        lookups.maybe_refresh();
        assert!(lookups.entries[0].reload.is_none());
        tokio::time::advance(Duration::from_secs(60)).await;
        refresh(&mut lookups).await;
        assert_eq!(campaign(&lookups).as_deref(), Some("c1"), "kept");
        tokio::time::advance(Duration::from_secs(60)).await;
        refresh(&mut lookups).await;
        assert_eq!(campaign(&lookups).as_deref(), Some("c2"), "reloaded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_without_refresh_is_never_reloaded() {
        let source = Scripted::source(vec![Ok("c1")]);
        let specs = [spec(Duration::ZERO)];
        let mut lookups = Lookups::load("p", &specs, Columns::All, &[source])
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        lookups.maybe_refresh();
        assert!(lookups.entries[0].reload.is_none());
        assert_eq!(campaign(&lookups).as_deref(), Some("c1"));
    }

    #[tokio::test]
    async fn a_first_load_that_fails_fails_naming_the_lookup() {
        let source = Scripted::source(vec![Err(PortError::refused("file", "no such file"))]);
        let err = Lookups::load("p", &[spec(Duration::ZERO)], Columns::All, &[source])
            .await
            .unwrap_err();
        let EngineError::Port(err @ PortError::Refused { .. }) = err else {
            panic!("{err:?}");
        };
        let cause = std::error::Error::source(&err).unwrap();
        assert_eq!(cause.to_string(), "lookup ads of pipeline p");
        assert_eq!(cause.source().unwrap().to_string(), "no such file");
        let source = Scripted::source(vec![Err(PortError::unavailable("postgres", "down"))]);
        let err = Lookups::load("p", &[spec(Duration::ZERO)], Columns::All, &[source])
            .await
            .unwrap_err();
        assert!(err.is_restartable());
        assert!(matches!(err, EngineError::Port(e) if e.is_retryable()));
    }
}
