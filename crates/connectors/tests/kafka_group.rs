//! Groups on Kafka (`Log::join`), against the broker named by `TRIBUTARY_KAFKA_BROKERS`:
//! - a first member gets every partition;
//! - a second member joining gets some of them only after the first released them
//!   (cooperative: the first keeps the others, without a revocation);
//! - a member that leaves (dropped) hands its partitions back to the other at once.
//!
//! Run: `eval "$(scripts/services.sh env)"; cargo test -p tributary-connectors --test kafka_group`

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tributary_connectors::kafka::{KafkaConfig, KafkaLog};
use tributary_core::event::StreamName;
use tributary_core::ports::{GroupChange, Log, Membership, StreamPartition};

/// How long a test waits for a change it expects.
const DEADLINE: Duration = Duration::from_secs(40);

async fn log() -> KafkaLog {
    let brokers = common::service_env("TRIBUTARY_KAFKA_BROKERS");
    let mut config = KafkaConfig::new(&brokers);
    config.topic_prefix = format!("tributary-test-{}.", uuid::Uuid::now_v7());
    config.group_session_timeout = Duration::from_secs(6);
    KafkaLog::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("Kafka at {brokers} is unreachable: {e:?}"))
}

/// The next change of `member`, within [`DEADLINE`].
async fn next(member: &mut dyn Membership) -> GroupChange {
    tokio::time::timeout(DEADLINE, member.next())
        .await
        .expect("a change of the group")
        .unwrap()
}

/// Waits until `member` is assigned something (skipping empty assignments).
async fn assigned(member: &mut dyn Membership) -> BTreeSet<StreamPartition> {
    loop {
        match next(member).await {
            GroupChange::Assigned(partitions) if !partitions.is_empty() => {
                return partitions.into_iter().collect();
            }
            GroupChange::Assigned(_) => {}
            other => panic!("expected an assignment, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_move_between_members_after_their_release() {
    let log = log().await;
    let stream = StreamName::new("g").unwrap();
    log.ensure_stream(&stream, 4).await.unwrap();
    let all: BTreeSet<StreamPartition> = (0..4).map(|p| (stream.clone(), p)).collect();
    let streams = [stream.clone()];

    let mut first = log.join("pipeline", &streams).await.unwrap();
    assert!(first.has_peers());
    assert_eq!(assigned(first.as_mut()).await, all);

    let mut second = log.join("pipeline", &streams).await.unwrap();
    // The first gives some partitions up, and the second gets them only once released.
    let revoked = match next(first.as_mut()).await {
        GroupChange::Revoked { partitions, lost } => {
            assert!(!lost, "a live member's partitions are revoked, not lost");
            partitions.into_iter().collect::<BTreeSet<_>>()
        }
        other => panic!("expected a revocation, got {other:?}"),
    };
    assert!(
        !revoked.is_empty() && revoked.len() < all.len(),
        "{revoked:?}"
    );
    let early = tokio::time::timeout(Duration::from_secs(2), second.next()).await;
    assert!(
        !matches!(&early, Ok(Ok(GroupChange::Assigned(p))) if !p.is_empty()),
        "assigned before the release: {early:?}"
    );
    first.released().await.unwrap();
    assert_eq!(assigned(second.as_mut()).await, revoked);

    // The second leaves: the first gets its partitions back, without a session timeout.
    let left = std::time::Instant::now();
    tokio::task::spawn_blocking(move || drop(second))
        .await
        .unwrap();
    assert_eq!(assigned(first.as_mut()).await, revoked);
    assert!(
        left.elapsed() < Duration::from_secs(6),
        "handed back after {:?}",
        left.elapsed()
    );
    tokio::task::spawn_blocking(move || drop(first))
        .await
        .unwrap();
}
