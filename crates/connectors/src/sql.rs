//! What the two SQL adapters, [`crate::postgres`] and [`crate::sqlite`], share: how sqlx
//! errors map to [`PortError`], the checks `commit_checkpoint` makes before writing, its
//! generation and epoch fences, the statements writing and reading state chunks
//! (`checkpoint_chunks`), decoding a `window_results` row, and building the
//! `query_results` statement.
//!
//! Contract: a [`Dialect`] names its system and its integer type (for messages) and
//! classifies its own database error codes; everything else here is dialect-neutral, so
//! both adapters refuse, fence, decode and filter in exactly the same way. Dialect-specific
//! SQL (upserts, locking, time types) stays in the adapters.

use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use tributary_core::Timestamp;
use tributary_core::ports::{
    Checkpoint, Claim, Fence, PortError, ResultQuery, StateChunk, StateDelta,
};
use tributary_core::window::WindowResult;

/// How a database error code classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Worth retrying: [`PortError::Unavailable`].
    Unavailable,
    /// Damaged data: [`PortError::Corrupt`].
    Corrupt,
    /// The request's fault: [`PortError::Refused`].
    Refused,
}

/// What the SQL adapters refuse before asking their database.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// Epochs start at 1.
    #[error("checkpoint epochs start at 1; epoch 0 cannot be committed")]
    ZeroEpoch,
    /// Generations come from claims, which start at 1.
    #[error("generation 0 is no claim's; claim the pipeline before committing")]
    ZeroGeneration,
    /// A number above `i64::MAX`.
    #[error("{what} {value} does not fit a {integer}")]
    TooLarge {
        /// What the number is.
        what: &'static str,
        /// The number.
        value: u64,
        /// The dialect's integer type.
        integer: &'static str,
    },
}

/// A time outside what a dialect can store, and on which side of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfRange {
    /// Before the earliest time the dialect holds.
    Before,
    /// After the latest time the dialect holds.
    After,
}

/// One SQL adapter's names and error codes.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// The system name carried by the adapter's errors.
    pub(crate) system: &'static str,
    /// The integer type named when a number is too large (e.g. "PostgreSQL bigint").
    pub(crate) integer: &'static str,
    /// Classifies an error the database itself reported.
    pub(crate) classify: fn(&dyn DatabaseError) -> Class,
    /// Whether a TLS error can only be the connection's trouble.
    pub(crate) tls_is_transient: bool,
}

impl Dialect {
    /// Classifies a sqlx error: connection trouble and transient server states are
    /// [`PortError::Unavailable`], undecodable rows are [`PortError::Corrupt`], the
    /// database's own errors as [`Dialect::classify`] says, the rest (bad data,
    /// configuration) is [`PortError::Refused`].
    pub(crate) fn sqlx_error(&self, error: sqlx::Error) -> PortError {
        let class = match &error {
            sqlx::Error::Tls(_) if self.tls_is_transient => Class::Unavailable,
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => Class::Unavailable,
            sqlx::Error::Database(db) => (self.classify)(db.as_ref()),
            sqlx::Error::RowNotFound
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_) => Class::Corrupt,
            _ => Class::Refused,
        };
        self.error(class, error)
    }

    /// Classifies a migration error: a failing statement is classified like any sqlx
    /// error; a database whose applied migrations differ from ours is
    /// [`PortError::Corrupt`].
    pub(crate) fn migrate_error(&self, error: MigrateError) -> PortError {
        match error {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                self.sqlx_error(inner)
            }
            MigrateError::VersionMismatch(_)
            | MigrateError::VersionMissing(_)
            | MigrateError::Dirty(_) => PortError::corrupt(self.system, error),
            _ => PortError::refused(self.system, error),
        }
    }

    /// `error` as the [`PortError`] of `class`.
    fn error(
        &self,
        class: Class,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> PortError {
        match class {
            Class::Unavailable => PortError::unavailable(self.system, error),
            Class::Corrupt => PortError::corrupt(self.system, error),
            Class::Refused => PortError::refused(self.system, error),
        }
    }

    /// `value` as the dialect's integer, or refused.
    pub(crate) fn integer(&self, what: &'static str, value: u64) -> Result<i64, PortError> {
        i64::try_from(value).map_err(|_| {
            PortError::refused(
                self.system,
                Invalid::TooLarge {
                    what,
                    value,
                    integer: self.integer,
                },
            )
        })
    }

    /// A stored integer that must not be negative, or corrupt.
    pub(crate) fn unsigned(&self, value: i64) -> Result<u64, PortError> {
        u64::try_from(value).map_err(|e| PortError::corrupt(self.system, e))
    }

    /// The claim of `pipeline` whose transaction bumped its generation to `generation`
    /// and read `checkpoint` and `chunks`, once committed.
    pub(crate) fn claimed(
        &self,
        pipeline: &str,
        generation: i64,
        checkpoint: Option<Checkpoint>,
        chunks: Vec<StateChunk>,
    ) -> Result<Claim, PortError> {
        let generation = self.unsigned(generation)?;
        tracing::debug!(
            system = self.system,
            pipeline,
            generation,
            chunks = chunks.len(),
            "pipeline claimed"
        );
        Ok(Claim {
            generation,
            checkpoint,
            chunks,
        })
    }

    /// Decodes one row of [`chunks_query`].
    pub(crate) fn chunk_from_row<R>(&self, row: &R) -> Result<StateChunk, PortError>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let error = |e| self.sqlx_error(e);
        Ok(StateChunk {
            group: row.try_get("grp").map_err(error)?,
            bytes: row.try_get("bytes").map_err(error)?,
        })
    }

    /// `epoch` as the dialect's integer, for a commit by the owner of `generation`; epoch
    /// 0, epochs above `i64::MAX` and generation 0 are refused.
    pub(crate) fn commit_epoch(&self, generation: u64, epoch: u64) -> Result<i64, PortError> {
        if generation == 0 {
            return Err(PortError::refused(self.system, Invalid::ZeroGeneration));
        }
        if epoch == 0 {
            return Err(PortError::refused(self.system, Invalid::ZeroEpoch));
        }
        self.integer("epoch", epoch)
    }

    /// Checks a commit of `checkpoint` by the owner of `generation` against the stored
    /// generation and epoch (`None` where no row is stored): the generation must be the
    /// stored one, then the stored epoch `checkpoint.epoch - 1`. Otherwise
    /// [`PortError::Fenced`] (logged as a warning), or [`PortError::Corrupt`] for a
    /// negative stored number.
    pub(crate) fn check_fences(
        &self,
        generation: u64,
        checkpoint: &Checkpoint,
        stored_generation: Option<i64>,
        stored_epoch: Option<i64>,
    ) -> Result<(), PortError> {
        let fenced = |fence, expected, found| {
            let pipeline = checkpoint.pipeline.as_str();
            tracing::warn!(pipeline, %fence, expected, found, "checkpoint fenced");
            PortError::Fenced {
                pipeline: pipeline.to_owned(),
                fence,
                expected,
                found,
            }
        };
        let owner = self.unsigned(stored_generation.unwrap_or(0))?;
        if owner != generation {
            return Err(fenced(Fence::Generation, generation, owner));
        }
        let found = self.unsigned(stored_epoch.unwrap_or(0))?;
        let expected = checkpoint.epoch.saturating_sub(1);
        if found != expected {
            return Err(fenced(Fence::Epoch, expected, found));
        }
        Ok(())
    }

    /// Decodes one `window_results` row, its times read by `time`.
    pub(crate) fn result_from_row<R>(
        &self,
        row: &R,
        time: fn(&R, &str) -> Result<Timestamp, sqlx::Error>,
    ) -> Result<WindowResult, PortError>
    where
        R: Row,
        for<'c> &'c str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let error = |e| self.sqlx_error(e);
        let count: i64 = row.try_get("count").map_err(error)?;
        Ok(WindowResult {
            pipeline: row.try_get("pipeline").map_err(error)?,
            window_start: time(row, "window_start").map_err(error)?,
            window_end: time(row, "window_end").map_err(error)?,
            key: row.try_get("key").map_err(error)?,
            count: self.unsigned(count)?,
            closed: row.try_get("closed").map_err(error)?,
        })
    }
}

/// Chunks per multi-row insert, and groups per delete: at most 5 bound values a row, well
/// below the limits of both dialects.
const CHUNKS_PER_STATEMENT: usize = 1000;

/// Reads every state chunk of `pipeline`, by group, then in commit order (epoch, then
/// position in its delta); [`Dialect::chunk_from_row`] decodes the rows.
pub(crate) fn chunks_query<'a, DB>(pipeline: &'a str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("SELECT grp, bytes FROM checkpoint_chunks WHERE pipeline = ");
    sql.push_bind(pipeline).push(" ORDER BY grp, epoch, seq");
    sql
}

/// The statements that apply `delta` to the state chunks of `pipeline`, written by its
/// checkpoint of `epoch`: to run in order, in the checkpoint's transaction, after its
/// fences passed. First the dropped groups are deleted, then the appended chunks inserted,
/// each under its position in the delta (`seq`), in batches of multi-row statements.
pub(crate) fn delta_statements<'a, DB>(
    pipeline: &'a str,
    epoch: i64,
    delta: &'a StateDelta,
) -> Vec<QueryBuilder<'a, DB>>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut statements = Vec::new();
    for groups in delta.drop_groups.chunks(CHUNKS_PER_STATEMENT) {
        let mut sql = QueryBuilder::new("DELETE FROM checkpoint_chunks WHERE pipeline = ");
        sql.push_bind(pipeline).push(" AND grp IN (");
        let mut list = sql.separated(", ");
        for &group in groups {
            list.push_bind(group);
        }
        sql.push(")");
        statements.push(sql);
    }
    let positions = (0_i64..).zip(&delta.append).collect::<Vec<_>>();
    for batch in positions.chunks(CHUNKS_PER_STATEMENT) {
        let mut sql =
            QueryBuilder::new("INSERT INTO checkpoint_chunks (pipeline, grp, epoch, seq, bytes) ");
        sql.push_values(batch, |mut row, &(seq, chunk)| {
            row.push_bind(pipeline)
                .push_bind(chunk.group)
                .push_bind(epoch)
                .push_bind(seq)
                .push_bind(chunk.bytes.as_slice());
        });
        statements.push(sql);
    }
    statements
}

/// The `query_results` statement: `from <= window_start < to` and the key, ordered by
/// `(window_start, key)`, limited. `time` converts a bound to the dialect's time value; a
/// bound beyond what the dialect holds either matches everything (no condition) or
/// nothing, and then there is no statement (`None`): the answer is empty.
pub(crate) fn results_query<'a, DB, T>(
    query: &'a ResultQuery,
    time: fn(Timestamp) -> Result<T, OutOfRange>,
) -> Option<QueryBuilder<'a, DB>>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    T: 'a + Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if query.limit == 0 {
        return None;
    }
    let mut sql = QueryBuilder::<DB>::new(
        "SELECT pipeline, window_start, window_end, key, count, closed \
         FROM window_results WHERE pipeline = ",
    );
    sql.push_bind(query.pipeline.as_str());
    if let Some(from) = query.from {
        match time(from) {
            Ok(from) => {
                sql.push(" AND window_start >= ").push_bind(from);
            }
            Err(OutOfRange::Before) => {}
            Err(OutOfRange::After) => return None,
        }
    }
    if let Some(to) = query.to {
        match time(to) {
            Ok(to) => {
                sql.push(" AND window_start < ").push_bind(to);
            }
            Err(OutOfRange::Before) => return None,
            Err(OutOfRange::After) => {}
        }
    }
    if let Some(key) = &query.key {
        sql.push(" AND key = ").push_bind(key.as_str());
    }
    sql.push(" ORDER BY window_start, key LIMIT ")
        .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
    Some(sql)
}

#[cfg(test)]
mod tests {
    use sqlx::Sqlite;

    use super::*;

    const TEST: Dialect = Dialect {
        system: "test",
        integer: "test integer",
        classify: |_| Class::Corrupt,
        tls_is_transient: false,
    };

    #[test]
    fn commit_epoch_refuses_zero_and_huge_epochs_and_generation_zero() {
        assert_eq!(TEST.commit_epoch(1, 1).unwrap(), 1);
        assert_eq!(TEST.commit_epoch(3, 8).unwrap(), 8);
        for (generation, epoch) in [(1, 0), (0, 1)] {
            assert!(matches!(
                TEST.commit_epoch(generation, epoch),
                Err(PortError::Refused { .. })
            ));
        }
        let huge = TEST.commit_epoch(1, u64::MAX).unwrap_err();
        assert!(matches!(huge, PortError::Refused { .. }));
        let source = std::error::Error::source(&huge).unwrap().to_string();
        assert_eq!(
            source,
            "epoch 18446744073709551615 does not fit a test integer"
        );
    }

    fn checkpoint(epoch: u64) -> Checkpoint {
        Checkpoint {
            pipeline: "p".to_owned(),
            epoch,
            offsets: Vec::new(),
            state: serde_json::Value::Null,
            watermark: Timestamp::MIN,
        }
    }

    #[track_caller]
    fn assert_fenced(outcome: Result<(), PortError>, fence: Fence, expected: u64, found: u64) {
        match outcome {
            Err(PortError::Fenced {
                pipeline,
                fence: f,
                expected: e,
                found: n,
            }) => assert_eq!((pipeline.as_str(), f, e, n), ("p", fence, expected, found)),
            other => panic!("expected Fenced, got {other:?}"),
        }
    }

    #[test]
    fn fences_check_the_generation_then_the_epoch() {
        TEST.check_fences(2, &checkpoint(5), Some(2), Some(4))
            .unwrap();
        TEST.check_fences(1, &checkpoint(1), Some(1), None).unwrap();
        // A newer claim fences whatever the epoch, a stale epoch the current owner too.
        assert_fenced(
            TEST.check_fences(2, &checkpoint(5), Some(3), Some(4)),
            Fence::Generation,
            2,
            3,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(1), None, None),
            Fence::Generation,
            2,
            0,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(5), Some(2), Some(5)),
            Fence::Epoch,
            4,
            5,
        );
        assert_fenced(
            TEST.check_fences(2, &checkpoint(2), Some(2), None),
            Fence::Epoch,
            1,
            0,
        );
        for (generation, epoch) in [(-1, 4), (2, -1)] {
            assert!(matches!(
                TEST.check_fences(2, &checkpoint(5), Some(generation), Some(epoch)),
                Err(PortError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn tls_errors_follow_the_dialect() {
        let tls = || sqlx::Error::Tls("handshake".into());
        assert!(matches!(TEST.sqlx_error(tls()), PortError::Refused { .. }));
        let network = Dialect {
            tls_is_transient: true,
            ..TEST
        };
        assert!(network.sqlx_error(tls()).is_retryable());
    }

    #[test]
    fn delta_statements_drop_then_append_in_batches() {
        let chunk = |group| StateChunk {
            group,
            bytes: vec![1, 2],
        };
        let delta = StateDelta {
            append: (0..2_500).map(chunk).collect(),
            drop_groups: vec![7, 9],
        };
        let sql: Vec<String> = delta_statements::<Sqlite>("p", 3, &delta)
            .iter()
            .map(|q| q.sql().to_owned())
            .collect();
        assert_eq!(sql.len(), 4);
        assert_eq!(
            sql[0],
            "DELETE FROM checkpoint_chunks WHERE pipeline = ? AND grp IN (?, ?)"
        );
        let rows = |s: &str| s.matches("(?, ?, ?, ?, ?)").count();
        assert!(sql[1].starts_with("INSERT INTO checkpoint_chunks"));
        assert_eq!(
            sql[1..].iter().map(|s| rows(s)).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        assert!(delta_statements::<Sqlite>("p", 3, &StateDelta::default()).is_empty());
    }

    fn query(from: Option<i64>, to: Option<i64>, key: Option<&str>) -> ResultQuery {
        ResultQuery {
            pipeline: "p".to_owned(),
            from: from.map(Timestamp::from_millis),
            to: to.map(Timestamp::from_millis),
            key: key.map(str::to_owned),
            limit: 10,
        }
    }

    /// Holds times 0..=100 only.
    fn small_range(ts: Timestamp) -> Result<i64, OutOfRange> {
        match ts.millis() {
            ..0 => Err(OutOfRange::Before),
            101.. => Err(OutOfRange::After),
            millis => Ok(millis),
        }
    }

    fn sql(query: &ResultQuery) -> Option<String> {
        results_query::<Sqlite, _>(query, small_range).map(|q| q.sql().to_owned())
    }

    #[test]
    fn results_query_filters_and_handles_bounds_beyond_the_dialect() {
        let base = "SELECT pipeline, window_start, window_end, key, count, closed \
                    FROM window_results WHERE pipeline = ?";
        let tail = " ORDER BY window_start, key LIMIT ?";
        assert_eq!(
            sql(&query(None, None, None)).unwrap(),
            format!("{base}{tail}")
        );
        assert_eq!(
            sql(&query(Some(1), Some(2), Some("k"))).unwrap(),
            format!("{base} AND window_start >= ? AND window_start < ? AND key = ?{tail}")
        );
        // A lower bound before the range matches everything, after it nothing.
        assert_eq!(
            sql(&query(Some(-5), None, None)).unwrap(),
            format!("{base}{tail}")
        );
        assert_eq!(sql(&query(Some(500), None, None)), None);
        // An upper bound before the range matches nothing, after it everything.
        assert_eq!(sql(&query(None, Some(-5), None)), None);
        assert_eq!(
            sql(&query(None, Some(500), None)).unwrap(),
            format!("{base}{tail}")
        );
        let mut none = query(None, None, None);
        none.limit = 0;
        assert_eq!(sql(&none), None);
    }
}
