//! The node's stream catalog: the config file's streams created in the log and written to
//! the stream store, then every stored stream loaded, those created through the API too.
//!
//! Contract:
//! - A config stream's topic is created (or found) with the config's partitions, and its
//!   record written with what the config says (partitions as the log has them,
//!   description, tenant), keeping what the API set on it (schema, retention). It is
//!   identified by its name, whatever its tenant (`tributary_gateway::catalog`, "Names"):
//!   its topic and stored records are where they were before tenants had namespaces.
//! - A stored config stream no longer in the config file loses its record (it is no longer
//!   served); its topic and records stay in the log.
//! - Every node does this at its start; it is idempotent, so nodes starting together agree.

use std::sync::Arc;

use anyhow::Context;
use tributary_core::Timestamp;
use tributary_core::ports::{Ports, StoredStream, StreamOrigin, StreamStore};
use tributary_gateway::StreamCatalog;
use tributary_gateway::catalog::CatalogStore;

use crate::config::{Checked, Config};

/// Creates the config's streams, stores them, and loads the catalog of every stored one.
///
/// # Errors
/// When the log or the stream store fails.
pub async fn open(
    config: &Config,
    checked: &Checked,
    ports: &Ports,
    store: Arc<dyn StreamStore>,
) -> anyhow::Result<StreamCatalog> {
    let topics = tributary_connectors::streams::topics(&config.log, Arc::clone(&ports.log))
        .context("cannot reach the log's admin interface")?;
    let now = Timestamp::now();
    for (name, declared) in checked.streams.iter().zip(&config.streams) {
        let partitions = ports
            .log
            .ensure_stream(name, declared.partitions)
            .await
            .with_context(|| format!("cannot create stream {name}"))?;
        let stream = StoredStream {
            name: name.clone(),
            tenant: declared.tenant.clone(),
            partitions,
            replication_factor: topics.default_replication_factor(),
            retention_ms: None,
            schema: None,
            description: declared.description.clone(),
            origin: StreamOrigin::Config,
            created_at: now,
            updated_at: now,
        };
        store
            .upsert_config(&stream)
            .await
            .with_context(|| format!("cannot store stream {name}"))?;
    }
    let mut stored = store
        .list()
        .await
        .context("cannot list the stored streams")?;
    let mut kept = Vec::with_capacity(stored.len());
    for stream in stored.drain(..) {
        if stream.origin == StreamOrigin::Config && !checked.streams.contains(&stream.name) {
            store
                .delete(&stream.name)
                .await
                .with_context(|| format!("cannot remove stream {}", stream.name))?;
            tracing::info!(
                stream = %stream.name,
                "stream no longer in the config file: no longer served (its records stay in the log)"
            );
        } else {
            kept.push(stream);
        }
    }
    Ok(StreamCatalog::of_stored(
        CatalogStore { store, topics },
        kept,
    ))
}

/// The catalog as the stream store holds it, for a tool (`tributary ingest`) that reads
/// streams and writes none: unlike [`open`], nothing of the config is written, so a tool run
/// with another config than the nodes' changes nothing of theirs.
///
/// # Errors
/// When the store fails.
pub async fn load(
    config: &Config,
    ports: &Ports,
    store: Arc<dyn StreamStore>,
) -> anyhow::Result<StreamCatalog> {
    let topics = tributary_connectors::streams::topics(&config.log, Arc::clone(&ports.log))
        .context("cannot reach the log's admin interface")?;
    StreamCatalog::load(CatalogStore { store, topics })
        .await
        .context("cannot load the stream catalog")
}
