//! Groups on Kafka: a [`Membership`] is a consumer of a Kafka consumer group, used only for
//! its assignments, never to read.
//!
//! - The group is `{topic_prefix}shards.{group}` (apart from the readers' groups, which are
//!   the tasks' names), subscribed to the topics of the group's streams, with the
//!   **cooperative-sticky** assignor: a rebalance moves only the partitions that change
//!   hands, and the others' tasks keep running.
//! - Its assigned partitions are paused at once: the consumer fetches nothing. It commits
//!   nothing either (the tasks' offsets live in their checkpoints).
//! - A thread polls it, which serves the rebalance callbacks. An assignment is handed to
//!   [`Membership::next`] after librdkafka applied it. A revocation is handed over *before*
//!   librdkafka gives the partitions up, and the callback waits (at most
//!   [`RELEASE_WAIT`]) until [`Membership::released`] says their tasks stopped after a
//!   last checkpoint: only then can the group give them to another member. While it
//!   waits, librdkafka's background thread keeps the session alive; the other members
//!   wait for this one to rejoin, up to `max.poll.interval.ms`.
//! - A member whose session expired learns it at its next rebalance, as a revocation with
//!   `lost` set (`rd_kafka_assignment_lost`).
//! - Dropping the membership closes the consumer, which leaves the group: the others get
//!   its partitions at once, without waiting for the session timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::mpsc as async_mpsc;
use tributary_core::StreamName;
use tributary_core::ports::{GroupChange, Membership, PortError, StreamPartition};

use super::KafkaConfig;

/// The longest a revocation waits for its tasks to stop, past which librdkafka gives the
/// partitions up anyway (their late commits are fenced by the next owner's claim).
pub(crate) const RELEASE_WAIT: Duration = Duration::from_secs(40);

/// How long a poll of the group's consumer waits: the pace of the callbacks.
const POLL: Duration = Duration::from_millis(100);

/// What the group's callbacks hand to the engine.
type Changes = async_mpsc::UnboundedSender<Result<GroupChange, PortError>>;

/// A member of a Kafka consumer group (see the module's documentation).
#[derive(Debug)]
pub struct KafkaMembership {
    changes: async_mpsc::UnboundedReceiver<Result<GroupChange, PortError>>,
    release: mpsc::SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Joins `group`, sharing the partitions of `topics` (each topic with its stream).
///
/// # Errors
/// [`PortError::Unavailable`] when the consumer cannot be created or subscribed.
pub(crate) fn join(
    config: &KafkaConfig,
    group: &str,
    topics: HashMap<String, StreamName>,
) -> Result<KafkaMembership, PortError> {
    let unavailable = |e: rdkafka::error::KafkaError| PortError::unavailable("kafka", e);
    let group_id = format!("{}shards.{group}", config.topic_prefix);
    let (changes_tx, changes) = async_mpsc::unbounded_channel();
    let (release, released) = mpsc::sync_channel(1);
    let names: Vec<String> = topics.keys().cloned().collect();
    let context = GroupContext {
        group: group_id.clone(),
        topics,
        changes: changes_tx,
        released: Mutex::new(released),
    };
    let session_ms = config.group_session_timeout.as_millis().to_string();
    let consumer: BaseConsumer<GroupContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("group.id", &group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", &session_ms)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .create_with_context(context)
        .map_err(unavailable)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(unavailable)?;
    tracing::info!(group = %group_id, topics = ?names, "joined the group");
    let stop = Arc::new(AtomicBool::new(false));
    let polling = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("group-{group}"))
        .spawn(move || {
            while !polling.load(Ordering::Relaxed) {
                // Messages never come (every partition is paused); errors are transient
                // (librdkafka reconnects), and the group's state shows in the callbacks.
                if let Some(Err(err)) = consumer.poll(POLL) {
                    tracing::debug!(group = %group_id, error = &err as &dyn std::error::Error, "group consumer");
                }
            }
            // Dropping closes the consumer: it leaves the group.
            drop(consumer);
            tracing::info!(group = %group_id, "left the group");
        })
        .map_err(|e| PortError::unavailable("kafka", e))?;
    Ok(KafkaMembership {
        changes,
        release,
        stop,
        thread: Some(thread),
    })
}

#[async_trait]
impl Membership for KafkaMembership {
    async fn next(&mut self) -> Result<GroupChange, PortError> {
        match self.changes.recv().await {
            Some(change) => change,
            None => Err(PortError::unavailable(
                "kafka",
                "the group's consumer stopped",
            )),
        }
    }

    async fn released(&mut self) -> Result<(), PortError> {
        // The callback waits for it; if it gave up waiting, nothing reads this one.
        let _ = self.release.try_send(());
        Ok(())
    }
}

impl Drop for KafkaMembership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The closing consumer revokes everything: nobody waits for that release. A
        // revocation the engine will not release now (it is stopping) is released here.
        self.changes.close();
        let _ = self.release.try_send(());
        // Waits until the consumer left the group (a round trip to the coordinator): drop
        // it off the runtime's threads.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The callbacks of a group's consumer.
struct GroupContext {
    group: String,
    topics: HashMap<String, StreamName>,
    changes: Changes,
    released: Mutex<mpsc::Receiver<()>>,
}

impl GroupContext {
    /// The stream partitions of `list`.
    fn partitions(&self, list: &TopicPartitionList) -> Vec<StreamPartition> {
        list.elements()
            .iter()
            .filter_map(|element| {
                let stream = self.topics.get(element.topic())?;
                let partition = u32::try_from(element.partition()).ok()?;
                Some((stream.clone(), partition))
            })
            .collect()
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            if let Rebalance::Error(err) = rebalance {
                tracing::warn!(group = %self.group, error = err as &dyn std::error::Error, "group rebalance failed");
            }
            return;
        };
        let partitions = self.partitions(list);
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        let released = self
            .released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A release the engine sent after this callback gave up waiting is stale.
        while released.try_recv().is_ok() {}
        if self
            .changes
            .send(Ok(GroupChange::Revoked { partitions, lost }))
            .is_err()
        {
            return;
        }
        if released.recv_timeout(RELEASE_WAIT).is_err() {
            tracing::warn!(group = %self.group, "revoked partitions not released in time; giving them up");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        if list.count() > 0
            && let Err(err) = consumer.pause(list)
        {
            tracing::warn!(group = %self.group, error = &err as &dyn std::error::Error, "assigned partitions not paused");
        }
        let _ = self
            .changes
            .send(Ok(GroupChange::Assigned(self.partitions(list))));
    }
}
