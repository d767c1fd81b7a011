//! The one-time migration of a log file written by redb 2 (Tributary before redb 4).
//!
//! redb 3 changed the file format (v2 to v3) and the encoding of variable-width tuples,
//! which the key of `meta/group_offsets` is. redb 3 and later refuse a v2 file
//! (`UpgradeRequired`) and can no longer decode the old tuples. [`from_redb2`] therefore
//! opens such a file with redb 2.6 (the `redb2` dependency), which knows both formats:
//!
//! 1. in one write transaction, it copies `meta/group_offsets` into `meta/group_offsets/v2`,
//!    whose key is the JSON array `[group, stream, partition]` (no tuple encoding), and
//!    deletes the old table;
//! 2. it upgrades the file to format v3 with redb's own `Database::upgrade`.
//!
//! Then [`RedbLog::open`](super::RedbLog) opens the file with the current redb and, in its
//! first write transaction, [`restore_group_offsets`] moves the staged offsets back into
//! `meta/group_offsets`. The partition tables (`u64` keys, byte values) and `meta/streams`
//! (`&str` keys, `u32` values) are read as they are. Each step is atomic and the sequence
//! can be run again after a crash at any point: step 1 finds an empty old table, step 2
//! finds the file upgraded, and the restore finds the staging table or nothing.

use std::path::Path;

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use redb2::ReadableTable as _;
use tributary_core::ports::PortError;

use super::log::{GROUP_OFFSETS, SYSTEM, redb_error};

/// The name of the table holding the group offsets between the two steps.
const STAGED_NAME: &str = "meta/group_offsets/v2";

/// `[group, stream, partition]` as a JSON array -> next offset, in the current redb.
const STAGED: TableDefinition<&str, u64> = TableDefinition::new(STAGED_NAME);

/// The group offsets as redb 2 wrote them.
const OLD_GROUP_OFFSETS: redb2::TableDefinition<(&str, &str, u32), u64> =
    redb2::TableDefinition::new("meta/group_offsets");

/// The same staging table, as redb 2 writes it.
const OLD_STAGED: redb2::TableDefinition<&str, u64> = redb2::TableDefinition::new(STAGED_NAME);

/// Migrates the redb 2 file at `path` to file format v3 (see the module docs).
///
/// # Errors
/// [`PortError::Unavailable`] when the file cannot be read or written (or is open in
/// another process), [`PortError::Corrupt`] when redb 2 cannot read it either.
pub(super) fn from_redb2(path: &Path) -> Result<(), PortError> {
    tracing::info!(path = %path.display(), "migrating the embedded log from redb 2 (file format v2)");
    let mut db = redb2::Database::open(path).map_err(old_error)?;
    let txn = db.begin_write().map_err(old_error)?;
    let mut moved = 0_usize;
    {
        let old = txn.open_table(OLD_GROUP_OFFSETS).map_err(old_error)?;
        let mut staged = txn.open_table(OLD_STAGED).map_err(old_error)?;
        for entry in old.iter().map_err(old_error)? {
            let (key, offset) = entry.map_err(old_error)?;
            let (group, stream, partition) = key.value();
            let key = staged_key(group, stream, partition);
            staged
                .insert(key.as_str(), offset.value())
                .map_err(old_error)?;
            moved += 1;
        }
    }
    txn.delete_table(OLD_GROUP_OFFSETS).map_err(old_error)?;
    txn.commit().map_err(old_error)?;
    let upgraded = db.upgrade().map_err(old_error)?;
    tracing::info!(
        path = %path.display(),
        group_offsets = moved,
        upgraded,
        "embedded log migrated to file format v3"
    );
    Ok(())
}

/// Moves the group offsets staged by [`from_redb2`], if any, into `meta/group_offsets`,
/// inside `txn`.
///
/// # Errors
/// When the database cannot be read or a staged key is not one [`from_redb2`] wrote.
pub(super) fn restore_group_offsets(txn: &WriteTransaction) -> Result<(), PortError> {
    let staged_exists = txn
        .list_tables()
        .map_err(redb_error)?
        .any(|table| table.name() == STAGED_NAME);
    if !staged_exists {
        return Ok(());
    }
    {
        let staged = txn.open_table(STAGED).map_err(redb_error)?;
        let mut offsets = txn.open_table(GROUP_OFFSETS).map_err(redb_error)?;
        for entry in staged.iter().map_err(redb_error)? {
            let (key, offset) = entry.map_err(redb_error)?;
            let (group, stream, partition): (String, String, u32) =
                serde_json::from_str(key.value()).map_err(|e| PortError::corrupt(SYSTEM, e))?;
            offsets
                .insert((group.as_str(), stream.as_str(), partition), offset.value())
                .map_err(redb_error)?;
        }
    }
    txn.delete_table(STAGED).map_err(redb_error)?;
    Ok(())
}

/// The staging key of a group offset.
fn staged_key(group: &str, stream: &str, partition: u32) -> String {
    serde_json::json!([group, stream, partition]).to_string()
}

/// Classifies a redb 2 error as the current adapter classifies redb's.
fn old_error(error: impl Into<redb2::Error>) -> PortError {
    let error: redb2::Error = error.into();
    match error {
        redb2::Error::Io(_)
        | redb2::Error::PreviousIo
        | redb2::Error::DatabaseAlreadyOpen
        | redb2::Error::LockPoisoned(_) => PortError::unavailable(SYSTEM, error),
        redb2::Error::Corrupted(_)
        | redb2::Error::UpgradeRequired(_)
        | redb2::Error::TableTypeMismatch { .. }
        | redb2::Error::TypeDefinitionChanged { .. } => PortError::corrupt(SYSTEM, error),
        _ => PortError::refused(SYSTEM, error),
    }
}

#[cfg(test)]
mod tests {
    use super::staged_key;

    #[test]
    fn staged_keys_are_json_arrays() {
        assert_eq!(staged_key("g", "s\"1", 3), r#"["g","s\"1",3]"#);
    }
}
