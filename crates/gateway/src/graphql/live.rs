//! Live pipeline results for the `pipelineResults` subscription.
//!
//! Contract:
//! - One poller per pipeline with subscribers, shared by all of them: every
//!   `poll_interval` it reads the pipeline's status from the cache (as `GET /v1/pipelines`
//!   does, [`PipelineStatus::load`]; the gateway may run apart from the engine), and when
//!   its checkpoint changed (epoch or commit time) it sends one [`ResultsUpdate`] through a
//!   broadcast channel to every subscriber. It starts with the first subscriber (the status
//!   it reads then is the baseline, not sent) and stops at the first poll that finds none.
//! - An update holds the rows the checkpoint wrote (the status's `latest`, rows as the
//!   REST API shows them) that the previous update did not hold, and `skipped`, how many
//!   checkpoints committed between the two observed ones (their rows are not sent: a client
//!   that needs every row queries `pipelineResults` for the windows it follows). For a
//!   pipeline run in parts, the status merges the parts' (epochs summed, the latest rows of
//!   every part): `skipped` counts the parts' checkpoints.
//! - A subscriber that falls more than [`CHANNEL_CAPACITY`] updates behind misses the
//!   oldest ones (logged at debug level); the others are not slowed down.
//! - A cache that fails or holds an undecodable status sends nothing (as the listing shows
//!   `null`, logged there); polling goes on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::{Json, SimpleObject};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;
use tributary_core::pipeline::PipelineStatus;

use crate::AppState;
use crate::routes::pipelines::cached_status;

/// How many updates a subscriber may fall behind before it misses the oldest.
pub(crate) const CHANNEL_CAPACITY: usize = 64;

/// The results of one observed checkpoint of a pipeline.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct ResultsUpdate {
    /// The pipeline.
    pub pipeline: String,
    /// The epoch of the checkpoint (summed over the pipeline's parts, as in its status).
    pub epoch: u64,
    /// When it committed, RFC 3339.
    pub committed_at: String,
    /// The pipeline's watermark at that checkpoint, RFC 3339; `null` before any event.
    pub watermark: Option<String>,
    /// How many checkpoints committed since the previous update without being observed
    /// (each part's, for a pipeline run in parts: an update holds the latest rows of every
    /// part, so rows may, not must, have been missed).
    pub skipped: u64,
    /// The result rows the checkpoint wrote that the previous update did not hold.
    pub results: Vec<Json<Value>>,
}

/// The pollers of the pipelines with subscribers. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<ResultsUpdate>>>>>,
    interval: Duration,
}

impl Hub {
    /// A hub whose pollers read statuses every `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            channels: Arc::default(),
            interval,
        }
    }

    /// A receiver of `pipeline`'s updates, starting its poller if it has none.
    pub(crate) fn subscribe(
        &self,
        state: &AppState,
        pipeline: &str,
    ) -> broadcast::Receiver<Arc<ResultsUpdate>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(pipeline) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
        channels.insert(pipeline.to_owned(), sender.clone());
        tokio::spawn(poll(
            self.clone(),
            state.clone(),
            pipeline.to_owned(),
            sender,
        ));
        receiver
    }

    /// How many pipelines have a poller.
    #[cfg(test)]
    fn pollers(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Removes `pipeline`'s channel when nobody listens; whether it did.
    fn close_if_unheard(
        &self,
        pipeline: &str,
        sender: &broadcast::Sender<Arc<ResultsUpdate>>,
    ) -> bool {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if sender.receiver_count() > 0 {
            return false;
        }
        channels.remove(pipeline);
        true
    }
}

/// The poller of one pipeline (see the module's contract).
async fn poll(
    hub: Hub,
    state: AppState,
    pipeline: String,
    sender: broadcast::Sender<Arc<ResultsUpdate>>,
) {
    let mut seen = Seen::of(cached_status(&state, &pipeline).await);
    let mut ticks = tokio::time::interval(hub.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate: the baseline was just read.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if hub.close_if_unheard(&pipeline, &sender) {
            tracing::debug!(pipeline, "no subscriber left: poller stopped");
            return;
        }
        if let Some(status) = cached_status(&state, &pipeline).await
            && let Some(update) = seen.update(status)
        {
            // Fails only when every subscriber left since the check: the next poll ends.
            let _ = sender.send(Arc::new(update));
        }
    }
}

/// What a poller last observed: the checkpoint, and the rows it sent for it.
#[derive(Debug, Default)]
struct Seen {
    checkpoint: Option<(u64, i64)>,
    rows: HashSet<String>,
}

impl Seen {
    fn of(status: Option<PipelineStatus>) -> Self {
        let mut seen = Self::default();
        if let Some(status) = status {
            seen.update(status);
        }
        seen
    }

    /// The update for `status` when its checkpoint is not the one last observed.
    fn update(&mut self, status: PipelineStatus) -> Option<ResultsUpdate> {
        let checkpoint = (status.epoch, status.committed_at.millis());
        if self.checkpoint == Some(checkpoint) {
            return None;
        }
        let skipped = match self.checkpoint {
            Some((epoch, _)) if status.epoch > epoch => status.epoch - epoch - 1,
            _ => 0,
        };
        self.checkpoint = Some(checkpoint);
        let mut rows = HashSet::with_capacity(status.latest.len());
        let mut results = Vec::new();
        for row in status.latest {
            let text = row.to_string();
            if !self.rows.contains(&text) {
                results.push(Json(row));
            }
            rows.insert(text);
        }
        self.rows = rows;
        Some(ResultsUpdate {
            pipeline: status.pipeline,
            epoch: status.epoch,
            committed_at: status.committed_at.to_string(),
            watermark: status.watermark.map(|w| w.to_string()),
            skipped,
            results,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tributary_core::Timestamp;

    use super::*;

    fn status(epoch: u64, latest: Vec<Value>) -> PipelineStatus {
        PipelineStatus {
            pipeline: "p".into(),
            epoch,
            watermark: None,
            committed_at: Timestamp::from_millis(1_000 * i64::try_from(epoch).unwrap()),
            late_events: 0,
            duplicates: 0,
            filtered: 0,
            latest,
        }
    }

    #[test]
    fn updates_hold_new_rows_and_count_skipped_checkpoints() {
        let mut seen = Seen::of(Some(status(1, vec![json!({"k": "a"})])));
        assert!(seen.update(status(1, vec![json!({"k": "a"})])).is_none());
        let update = seen
            .update(status(2, vec![json!({"k": "a"}), json!({"k": "b"})]))
            .unwrap();
        assert_eq!((update.epoch, update.skipped), (2, 0));
        assert_eq!(update.results.len(), 1);
        assert_eq!(update.results[0].0, json!({"k": "b"}));
        let update = seen.update(status(5, vec![json!({"k": "c"})])).unwrap();
        assert_eq!((update.epoch, update.skipped), (5, 2));
        assert_eq!(update.results[0].0, json!({"k": "c"}));
        // No baseline: the first status seen is an update.
        let mut fresh = Seen::of(None);
        assert_eq!(fresh.update(status(3, vec![])).unwrap().skipped, 0);
    }

    #[test]
    fn an_unheard_channel_is_closed() {
        let hub = Hub::new(Duration::from_millis(10));
        let (sender, receiver) = broadcast::channel(1);
        hub.channels
            .lock()
            .unwrap()
            .insert("p".into(), sender.clone());
        assert!(!hub.close_if_unheard("p", &sender));
        assert_eq!(hub.pollers(), 1);
        drop(receiver);
        assert!(hub.close_if_unheard("p", &sender));
        assert_eq!(hub.pollers(), 0);
    }
}
