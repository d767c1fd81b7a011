//! A log file written by redb 2 (file format v2, the tables as Tributary wrote them before
//! redb 4) opens through [`RedbLog::open`], which migrates it once: its streams, records and
//! group offsets are all there, appends continue its offsets, and the file is then one the
//! current redb opens directly.
//!
//! Run: `cargo test -p tributary-connectors --test redb_migration`

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::json;
use tributary_connectors::redb::{RedbLog, RedbLogConfig};
use tributary_core::event::{Event, EventId, StreamName, Timestamp};
use tributary_core::partition::partition_for;
use tributary_core::ports::{Log, PartitionOffset};

/// The tables of the embedded log, as redb 2 stored them.
const STREAMS: redb2::TableDefinition<&str, u32> = redb2::TableDefinition::new("meta/streams");
const GROUP_OFFSETS: redb2::TableDefinition<(&str, &str, u32), u64> =
    redb2::TableDefinition::new("meta/group_offsets");

const PARTITIONS: u32 = 2;

fn clicks() -> StreamName {
    StreamName::new("clicks").unwrap()
}

fn event(n: i64) -> Event {
    Event {
        id: EventId::new(format!("c{n}")).unwrap(),
        stream: clicks(),
        ts: Timestamp::from_millis(1_700_000_000_000 + n),
        key: Some(format!("user-{}", n % 3)),
        payload: json!({ "n": n, "page": "/héllo" })
            .as_object()
            .unwrap()
            .clone(),
    }
}

/// Writes `events` of `clicks` and two groups' offsets the way the redb 2 adapter did:
/// `meta/streams`, one `log/{stream}/{partition}` table per partition keyed by offset,
/// and `meta/group_offsets` keyed by `(group, stream, partition)`.
fn write_with_redb2(path: &std::path::Path, events: &[Event]) {
    let db = redb2::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        txn.open_table(STREAMS)
            .unwrap()
            .insert("clicks", PARTITIONS)
            .unwrap();
        let mut next = [0_u64; PARTITIONS as usize];
        for event in events {
            let partition = partition_for(event.partition_key(), PARTITIONS);
            let name = format!("log/clicks/{partition}");
            let mut table = txn
                .open_table(redb2::TableDefinition::<u64, &[u8]>::new(&name))
                .unwrap();
            let offset = &mut next[partition as usize];
            table
                .insert(*offset, event.to_json_bytes().as_slice())
                .unwrap();
            *offset += 1;
        }
        let mut offsets = txn.open_table(GROUP_OFFSETS).unwrap();
        offsets.insert(("reporting", "clicks", 0), 3).unwrap();
        offsets.insert(("reporting", "clicks", 1), 1).unwrap();
        offsets.insert(("audit:é", "clicks", 1), 2).unwrap();
    }
    txn.commit().unwrap();
}

async fn open(config: &RedbLogConfig) -> RedbLog {
    let config = config.clone();
    tokio::task::spawn_blocking(move || RedbLog::open(&config))
        .await
        .unwrap()
        .unwrap()
}

fn from_start() -> Vec<PartitionOffset> {
    (0..PARTITIONS)
        .map(|partition| PartitionOffset {
            stream: clicks(),
            partition,
            next_offset: 0,
        })
        .collect()
}

#[tokio::test]
async fn a_redb2_log_is_migrated_on_open_with_its_records_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbLogConfig {
        path: dir.path().join("log.redb"),
    };
    let written: Vec<Event> = (0..8).map(event).collect();
    write_with_redb2(&config.path, &written);
    // The current redb refuses the file as it is: the migration is what makes it readable.
    match redb::Database::open(&config.path) {
        Err(redb::DatabaseError::UpgradeRequired(_)) => {}
        other => panic!("expected UpgradeRequired, got {other:?}"),
    }

    let log = open(&config).await;
    let stream = clicks();
    assert_eq!(log.partitions(&stream).await.unwrap(), PARTITIONS);
    assert_eq!(log.ensure_stream(&stream, 5).await.unwrap(), PARTITIONS);
    let mut reader = log.reader("check", &from_start()).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), written.len()).await;
    let mut read: Vec<Event> = records.iter().map(|r| r.event.clone()).collect();
    read.sort_by_key(|e| e.ts);
    assert_eq!(read, written);
    for record in &records {
        assert_eq!(
            record.partition,
            partition_for(record.event.partition_key(), PARTITIONS)
        );
    }
    assert_eq!(
        log.committed_offset("reporting", &stream, 0).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        log.committed_offset("reporting", &stream, 1).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        log.committed_offset("audit:é", &stream, 1).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        log.committed_offset("audit:é", &stream, 0).await.unwrap(),
        None
    );

    // Appends continue the partition's offsets.
    let later = event(8);
    let partition = partition_for(later.partition_key(), PARTITIONS);
    let before = records.iter().filter(|r| r.partition == partition).count() as u64;
    log.append(&stream, std::slice::from_ref(&later))
        .await
        .unwrap();
    let more = common::read_exactly(reader.as_mut(), 1).await;
    assert_eq!(more[0].event, later);
    assert_eq!((more[0].partition, more[0].offset), (partition, before));
    drop(reader);
    drop(log);

    // Migrated once: the current redb opens the file as it is, without the staging table,
    // and the log reopens with its data.
    {
        let db = redb::Database::open(&config.path).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_owned())
            .collect();
        assert!(
            tables.iter().all(|name| !name.ends_with("/v2")),
            "{tables:?}"
        );
    }
    let log = open(&config).await;
    let mut reader = log.reader("again", &from_start()).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), written.len() + 1).await;
    assert!(records.iter().any(|r| r.event == later));
    assert_eq!(
        log.committed_offset("reporting", &stream, 0).await.unwrap(),
        Some(3)
    );
}

/// A migration interrupted after its first step (offsets staged, file still format v2) is
/// completed by the next open, with the staged offsets.
#[tokio::test]
async fn an_interrupted_migration_completes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbLogConfig {
        path: dir.path().join("log.redb"),
    };
    let written: Vec<Event> = (0..4).map(event).collect();
    write_with_redb2(&config.path, &written);
    {
        // The first step, as `migrate::from_redb2` makes it, then a crash.
        let db = redb2::Database::open(&config.path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb2::TableDefinition::<&str, u64>::new(
            "meta/group_offsets/v2",
        ))
        .unwrap()
        .insert(r#"["reporting","clicks",0]"#, 3)
        .unwrap();
        txn.delete_table(GROUP_OFFSETS).unwrap();
        txn.commit().unwrap();
    }
    let log = open(&config).await;
    let stream = clicks();
    assert_eq!(
        log.committed_offset("reporting", &stream, 0).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        log.committed_offset("reporting", &stream, 1).await.unwrap(),
        None
    );
    let mut reader = log.reader("check", &from_start()).await.unwrap();
    let records = common::read_exactly(reader.as_mut(), written.len()).await;
    assert_eq!(records.len(), written.len());
}
