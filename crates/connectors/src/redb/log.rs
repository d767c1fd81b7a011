//! [`RedbLog`]: the embedded [`Log`], and its [`RedbLogReader`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition,
    TableError,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tributary_core::dead_letter::DeadLetter;
use tributary_core::event::{Event, StreamName};
use tributary_core::partition::partition_for;
use tributary_core::ports::{Log, LogReader, LogRecord, PartitionOffset, PortError, RawBatch};

use crate::log_checks::{check_batch_stream, check_partition, decode_batch};

use super::config::RedbLogConfig;
use super::migrate;

/// The system name carried by this adapter's errors.
pub(super) const SYSTEM: &str = "redb";

/// Stream name -> partition count.
const STREAMS: TableDefinition<&str, u32> = TableDefinition::new("meta/streams");

/// (group, stream, partition) -> next offset the group will process; for lag only.
pub(super) const GROUP_OFFSETS: TableDefinition<(&str, &str, u32), u64> =
    TableDefinition::new("meta/group_offsets");

/// The name of the table holding one partition of a stream.
fn partition_table_name(stream: &str, partition: u32) -> String {
    format!("log/{stream}/{partition}")
}

/// The offset the next record appended to a partition's table gets: its last one + 1.
fn end_offset(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, PortError> {
    let last = table.last().map_err(redb_error)?;
    Ok(last.map_or(0, |(offset, _)| offset.value() + 1))
}

/// Classifies a redb error: I/O is transient, corruption is ours, the rest is refused.
pub(super) fn redb_error(error: impl Into<redb::Error>) -> PortError {
    let error: redb::Error = error.into();
    match error {
        redb::Error::Io(_)
        | redb::Error::PreviousIo
        | redb::Error::DatabaseAlreadyOpen
        | redb::Error::LockPoisoned(_) => PortError::unavailable(SYSTEM, error),
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. } => PortError::corrupt(SYSTEM, error),
        _ => PortError::refused(SYSTEM, error),
    }
}

/// The embedded, durable log: one redb file holding every stream.
///
/// Cheap to clone: clones share the database and wake each other's readers.
#[derive(Clone)]
pub struct RedbLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Bumped after every committed append; readers wait on it instead of polling.
    appended: watch::Sender<u64>,
}

impl fmt::Debug for RedbLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl RedbLog {
    /// Opens the log file, creating it (and its parent directories) when missing.
    ///
    /// This does blocking file I/O: call it at startup, or inside
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// [`PortError::Unavailable`] when the file cannot be created or is locked by another
    /// process, [`PortError::Corrupt`] when it is not a redb database Tributary can read.
    pub fn open(config: &RedbLogConfig) -> Result<Self, PortError> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PortError::unavailable(SYSTEM, e))?;
        }
        let db = match Database::create(&config.path) {
            Err(DatabaseError::UpgradeRequired(_)) => {
                migrate::from_redb2(&config.path)?;
                Database::create(&config.path).map_err(redb_error)?
            }
            opened => opened.map_err(redb_error)?,
        };
        // Create the metadata tables once, so that readers never meet a missing one.
        let txn = db.begin_write().map_err(redb_error)?;
        txn.open_table(STREAMS).map_err(redb_error)?;
        txn.open_table(GROUP_OFFSETS).map_err(redb_error)?;
        migrate::restore_group_offsets(&txn)?;
        txn.commit().map_err(redb_error)?;
        tracing::info!(path = %config.path.display(), "embedded log opened");
        let (appended, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path: config.path.clone(),
                appended,
            }),
        })
    }

    /// The next offset `group` reported as processed in a partition through
    /// [`LogReader::commit`], if it reported any.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn committed_offset(
        &self,
        group: &str,
        stream: &StreamName,
        partition: u32,
    ) -> Result<Option<u64>, PortError> {
        let group = group.to_owned();
        let stream = stream.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let table = txn.open_table(GROUP_OFFSETS).map_err(redb_error)?;
            let offset = table
                .get((group.as_str(), stream.as_str(), partition))
                .map_err(redb_error)?
                .map(|guard| guard.value());
            Ok(offset)
        })
        .await
    }

    /// Runs `f` on the database on the blocking thread pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, PortError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner.db))
            .await
            .map_err(|e| PortError::unavailable(SYSTEM, e))?
    }

    /// The partition count of `stream`, inside a read transaction.
    fn partition_count(txn: &redb::ReadTransaction, stream: &StreamName) -> Result<u32, PortError> {
        let table = txn.open_table(STREAMS).map_err(redb_error)?;
        let count = table
            .get(stream.as_str())
            .map_err(redb_error)?
            .map(|guard| guard.value());
        count.ok_or_else(|| PortError::UnknownStream(stream.clone()))
    }
}

#[async_trait]
impl Log for RedbLog {
    async fn ping(&self) -> Result<(), PortError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(redb_error)?;
            txn.open_table(STREAMS).map_err(redb_error)?;
            Ok(())
        })
        .await
    }

    /// Creates the stream with `partitions` partitions (0 is taken as 1) unless it exists.
    async fn ensure_stream(&self, stream: &StreamName, partitions: u32) -> Result<u32, PortError> {
        let stream = stream.clone();
        let requested = partitions.max(1);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(redb_error)?;
            let existing = {
                let mut streams = txn.open_table(STREAMS).map_err(redb_error)?;
                let existing = streams
                    .get(stream.as_str())
                    .map_err(redb_error)?
                    .map(|guard| guard.value());
                if existing.is_none() {
                    streams
                        .insert(stream.as_str(), requested)
                        .map_err(redb_error)?;
                }
                existing
            };
            if let Some(count) = existing {
                txn.abort().map_err(redb_error)?;
                return Ok(count);
            }
            for partition in 0..requested {
                let name = partition_table_name(stream.as_str(), partition);
                txn.open_table(TableDefinition::<u64, &[u8]>::new(&name))
                    .map_err(redb_error)?;
            }
            txn.commit().map_err(redb_error)?;
            tracing::info!(stream = %stream, partitions = requested, "embedded log stream created");
            Ok(requested)
        })
        .await
    }

    async fn partitions(&self, stream: &StreamName) -> Result<u32, PortError> {
        let stream = stream.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            Self::partition_count(&txn, &stream)
        })
        .await
    }

    async fn append(&self, stream: &StreamName, events: &[Event]) -> Result<(), PortError> {
        check_batch_stream(SYSTEM, stream, events)?;
        let records: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| (e.partition_key().to_owned(), e.to_json_bytes()))
            .collect();
        let stream = stream.clone();
        let count = records.len();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(redb_error)?;
            txn.set_durability(Durability::Immediate)
                .map_err(redb_error)?;
            let partitions = {
                let streams = txn.open_table(STREAMS).map_err(redb_error)?;
                let count = streams
                    .get(stream.as_str())
                    .map_err(redb_error)?
                    .map(|guard| guard.value());
                count.ok_or_else(|| PortError::UnknownStream(stream.clone()))?
            };
            let names: Vec<String> = (0..partitions)
                .map(|p| partition_table_name(stream.as_str(), p))
                .collect();
            {
                // Each touched partition's table, opened once, with its next offset.
                let mut tables = Vec::with_capacity(names.len());
                tables.resize_with(names.len(), || None);
                for (key, bytes) in &records {
                    let partition = partition_for(key, partitions) as usize;
                    let slot = &mut tables[partition];
                    if slot.is_none() {
                        let table = txn
                            .open_table(TableDefinition::<u64, &[u8]>::new(&names[partition]))
                            .map_err(redb_error)?;
                        let next = end_offset(&table)?;
                        *slot = Some((table, next));
                    }
                    if let Some((table, next)) = slot.as_mut() {
                        table.insert(*next, bytes.as_slice()).map_err(redb_error)?;
                        *next += 1;
                    }
                }
            }
            txn.commit().map_err(redb_error)?;
            Ok(())
        })
        .await?;
        self.inner
            .appended
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        tracing::debug!(events = count, "embedded log append committed");
        Ok(())
    }

    /// One read transaction: each partition's last offset + 1, as `append` numbers them.
    async fn end_offsets(&self, stream: &StreamName) -> Result<Vec<u64>, PortError> {
        let stream = stream.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let partitions = Self::partition_count(&txn, &stream)?;
            let mut ends = Vec::with_capacity(partitions as usize);
            for partition in 0..partitions {
                let name = partition_table_name(stream.as_str(), partition);
                let end = match txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)) {
                    Ok(table) => end_offset(&table)?,
                    Err(TableError::TableDoesNotExist(_)) => 0,
                    Err(e) => return Err(redb_error(e)),
                };
                ends.push(end);
            }
            Ok(ends)
        })
        .await
    }

    async fn reader(
        &self,
        group: &str,
        start: &[PartitionOffset],
    ) -> Result<Box<dyn LogReader>, PortError> {
        let positions = start.to_vec();
        let checked = positions.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            for position in &checked {
                let partitions = Self::partition_count(&txn, &position.stream)?;
                check_partition(SYSTEM, position, partitions)?;
            }
            Ok(())
        })
        .await?;
        let appended = self.inner.appended.subscribe();
        Ok(Box::new(RedbLogReader {
            log: self.clone(),
            group: group.to_owned(),
            positions,
            appended,
            next_first: 0,
            rejected: Vec::new(),
        }))
    }
}

/// A reader over some partitions of a [`RedbLog`], positioned where the caller said.
pub struct RedbLogReader {
    log: RedbLog,
    group: String,
    /// The next offset to read, per assigned partition.
    positions: Vec<PartitionOffset>,
    /// Changes after every append to the log.
    appended: watch::Receiver<u64>,
    /// The partition read first at the next poll, rotated so that none starves.
    next_first: usize,
    /// The records skipped since the last `take_rejected`, as dead letters.
    rejected: Vec<DeadLetter>,
}

impl fmt::Debug for RedbLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbLogReader")
            .field("group", &self.group)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl RedbLogReader {
    /// Appends up to `max` records available now to `batch`, advancing the positions
    /// past them; returns the batch and how many it read.
    async fn read_available(
        &mut self,
        max: usize,
        mut batch: RawBatch,
    ) -> Result<(RawBatch, usize), PortError> {
        if self.positions.is_empty() || max == 0 {
            return Ok((batch, 0));
        }
        let first = self.next_first % self.positions.len();
        self.next_first = first + 1;
        let mut positions = self.positions.clone();
        let (batch, positions, read) = self
            .log
            .blocking(move |db| {
                let txn = db.begin_read().map_err(redb_error)?;
                let mut read = 0;
                let len = positions.len();
                for i in (0..len).map(|i| (first + i) % len) {
                    if read >= max {
                        break;
                    }
                    let position = &mut positions[i];
                    let name = partition_table_name(position.stream.as_str(), position.partition);
                    let table = match txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)) {
                        Ok(table) => table,
                        Err(TableError::TableDoesNotExist(_)) => continue,
                        Err(e) => return Err(redb_error(e)),
                    };
                    let stream = batch.stream_index(&position.stream);
                    for entry in table.range(position.next_offset..).map_err(redb_error)? {
                        if read >= max {
                            break;
                        }
                        let (offset, bytes) = entry.map_err(redb_error)?;
                        let offset = offset.value();
                        position.next_offset = offset + 1;
                        batch.push(stream, position.partition, offset, Some(bytes.value()));
                        read += 1;
                    }
                }
                Ok((batch, positions, read))
            })
            .await?;
        self.positions = positions;
        Ok((batch, read))
    }
}

#[async_trait]
impl LogReader for RedbLogReader {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<LogRecord>, PortError> {
        let mut batch = RawBatch::default();
        self.poll_raw(max, timeout, &mut batch).await?;
        Ok(decode_batch(&batch, &mut self.rejected))
    }

    async fn poll_raw(
        &mut self,
        max: usize,
        timeout: Duration,
        batch: &mut RawBatch,
    ) -> Result<(), PortError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Mark the current generation seen *before* reading, so that an append that
            // commits after the read below is noticed by `changed()`.
            self.appended.borrow_and_update();
            let (filled, read) = self.read_available(max, std::mem::take(batch)).await?;
            *batch = filled;
            if read > 0 || max == 0 {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.appended.changed()).await {
                Ok(Ok(())) => {}
                Err(_elapsed) => return Ok(()),
                Ok(Err(_closed)) => {
                    // Unreachable while this reader holds the log; wait out the timeout.
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
            }
        }
    }

    fn take_rejected(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.rejected)
    }

    /// Stores the offsets in `meta/group_offsets` without forcing them to disk: they are
    /// for lag monitoring, and losing the last ones in a crash is harmless.
    async fn commit(&mut self, offsets: &[PartitionOffset]) -> Result<(), PortError> {
        let group = self.group.clone();
        let offsets = offsets.to_vec();
        self.log
            .blocking(move |db| {
                let mut txn = db.begin_write().map_err(redb_error)?;
                txn.set_durability(Durability::None).map_err(redb_error)?;
                {
                    let mut table = txn.open_table(GROUP_OFFSETS).map_err(redb_error)?;
                    for offset in &offsets {
                        table
                            .insert(
                                (group.as_str(), offset.stream.as_str(), offset.partition),
                                offset.next_offset,
                            )
                            .map_err(redb_error)?;
                    }
                }
                txn.commit().map_err(redb_error)?;
                Ok(())
            })
            .await
    }
}
