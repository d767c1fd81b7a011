//! Wiring: builds the adapters a config names, then starts the roles in order — the log's
//! streams, the engine (pipelines and the raw-event archive), the HTTP gateway — and stops
//! them together.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_connectors::registry;
use tributary_core::StreamName;
use tributary_core::window::WindowOperator;
use tributary_engine::{Engine, EngineConfig};
use tributary_gateway::catalog::Streams;
use tributary_gateway::{ApiKeys, AppState, Drain, Edge, StreamCatalog, Surfaces};

use crate::config::Config;
use crate::server::{self, ConnectionLimits, DrainTimes};

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Every role below.
    All,
    /// The HTTP query API: streams, raw events, pipelines and results.
    Gateway,
    /// HTTP ingestion: `POST /v1/streams/{stream}/events`.
    Ingest,
    /// The engine: pipelines and the raw-event archive.
    Process,
}

/// A started process: its HTTP address and its tasks.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    tasks: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Waits until every role has stopped (after `shutdown`, or when one fails, which
    /// stops the others). Returns the first error.
    ///
    /// # Errors
    /// The first role's error.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(err) = outcome {
                self.shutdown.cancel();
                if first.is_ok() {
                    first = Err(err);
                }
            }
        }
        first
    }
}

/// Runs `roles` from `config` until `shutdown` is cancelled.
///
/// # Errors
/// When the config is invalid, an adapter cannot connect, or a role fails.
pub async fn run(
    config: Config,
    roles: &[Role],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    start(config, roles, shutdown).await?.wait().await
}

/// Starts `roles` from `config` and returns once they run.
///
/// # Errors
/// When the config is invalid, an adapter cannot connect, or the port is taken.
pub async fn start(
    config: Config,
    roles: &[Role],
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    start_with_keys(config, roles, shutdown, ApiKeys::from_bootstrap_env()).await
}

/// Like [`start`], accepting `keys` as admin API keys.
///
/// # Errors
/// As [`start`].
pub async fn start_with_keys(
    config: Config,
    roles: &[Role],
    shutdown: CancellationToken,
    keys: ApiKeys,
) -> anyhow::Result<Running> {
    let checked = config.validate()?;
    let has = |role| roles.contains(&Role::All) || roles.contains(&role);
    // Checked before anything connects; started once the streams exist.
    let sources = tributary_gateway::sources::Sources::default();
    if has(Role::Ingest) {
        crate::sources::register(&sources, &config.sources, &checked.streams, &config.log)?;
    }
    let metrics = metrics_handle();
    crate::telemetry::register_counters(&config);

    let (ports, catalogs) = registry::build_with_stores(
        &config.log,
        &config.analytics,
        &config.documents,
        &config.cache,
    )
    .await
    .context("cannot connect the adapters")?;
    let keys = credentials(keys, catalogs.keys, &config).await?;
    let streams = crate::catalog::open(&config, &checked, &ports, catalogs.streams).await?;

    // Bound before any task starts: a processor that cannot serve its probes must not
    // take over a pipeline (its restore claims it, fencing the one running) and then stop.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;

    let mut tasks = JoinSet::new();
    if has(Role::Process) {
        // The streams created and deleted through the API while the node runs are
        // archived (or no longer) as they change.
        let archived = config
            .engine
            .archive_raw_events
            .then(|| follow_archived(&checked, &streams, shutdown.clone()));
        check_stored_state(&ports, &checked.pipelines).await?;
        let engine = Engine::new(
            ports.clone(),
            EngineConfig {
                pipelines: checked.pipelines.clone(),
                archived_streams: archived
                    .as_ref()
                    .map(|a| a.borrow().clone())
                    .unwrap_or_default(),
                archive_checkpoint_interval: config.engine.archive_checkpoint_interval,
                batch_size: config.engine.batch_size,
                dead_letter_retention: checked.dead_letter_retention,
            },
        )
        .with_references(references(&checked.pipelines)?);
        let engine = match archived {
            Some(archived) => engine.with_archived_streams(archived),
            None => engine,
        };
        let token = shutdown.clone();
        tasks.spawn(async move { engine.run(token).await.context("engine failed") });
    }

    // The configured sources (`[[sources]]`) feed streams as HTTP ingestion does.
    if has(Role::Ingest) && !config.sources.is_empty() {
        let ingest =
            tributary_gateway::ingest::IngestService::new(ports.clone(), config.http.max_ts_ahead)
                .with_streams(streams.clone());
        let mut running = sources.start(&ingest, &shutdown);
        tasks.spawn(async move {
            // A source that fails stops alone: `/readyz` shows it.
            while let Some(joined) = running.join_next().await {
                match joined {
                    Ok((name, Err(error))) => {
                        tracing::error!(source = name, %error, "source failed");
                    }
                    Ok((name, Ok(()))) => tracing::info!(source = name, "source stopped"),
                    Err(error) => tracing::error!(%error, "a source's task failed"),
                }
            }
            Ok(())
        });
    }

    // Every process serves HTTP: health, readiness and metrics always (for probes and
    // scrapes, also on a processor), ingestion and queries when its roles include them.
    let surfaces = Surfaces {
        ingest: has(Role::Ingest),
        query: has(Role::Gateway),
    };
    if keys.is_empty() && (surfaces.ingest || surfaces.query) {
        tracing::warn!(
            variable = ApiKeys::BOOTSTRAP_ENV,
            "no admin key configured: only keys issued before and JWTs are accepted"
        );
    }
    // Streams created, changed or deleted on other nodes: served (ingest, queries) and
    // archived (process) within the refresh interval.
    drop(streams.spawn_refresh(shutdown.clone()));
    let state = AppState {
        ports: ports.clone(),
        streams,
        pipelines: Arc::new(checked.pipelines.clone()),
        auth: keys,
        max_body_bytes: config.http.max_body_bytes,
        max_ts_ahead: config.http.max_ts_ahead,
        metrics,
        drain: Drain::default(),
        edge: Edge::new(config.http.edge()),
        sources,
        rate_limit: rate_limit(&config)?,
    };
    let http_addr = listener.local_addr()?;
    tracing::info!(addr = %http_addr, ingest = surfaces.ingest, query = surfaces.query, "HTTP server listening");
    let drain = state.drain.clone();
    let router = tributary_gateway::router_with(state, surfaces, &config.graphql.settings());
    let times = DrainTimes {
        // Load balancers route /v1 requests only: a node without them has nobody to wait for.
        delay: if surfaces.ingest || surfaces.query {
            config.http.drain_delay
        } else {
            Duration::ZERO
        },
        timeout: config.http.drain_timeout,
    };
    let limits = ConnectionLimits {
        header_timeout: config.http.header_timeout,
    };
    let token = shutdown.clone();
    tasks.spawn(async move {
        server::serve(listener, router, drain, times, limits, token)
            .await
            .context("HTTP server failed")
    });
    Ok(Running {
        http_addr,
        tasks,
        shutdown,
    })
}

/// The streams whose raw events the archive keeps, as the catalog `streams` changes: the
/// config's, in order, then the others (created through the API), by name. A new value is
/// sent when a stream comes or goes or its partitions change.
fn follow_archived(
    checked: &crate::config::Checked,
    streams: &StreamCatalog,
    shutdown: CancellationToken,
) -> watch::Receiver<Vec<StreamName>> {
    let order = checked.streams.clone();
    let shape = move |catalog: &Streams| -> Vec<(StreamName, u32)> {
        let configured = order.iter().filter_map(|name| {
            catalog
                .get(name)
                .map(|entry| (name.clone(), entry.info.partitions))
        });
        let created = catalog
            .iter()
            .filter(|(name, _)| !order.contains(name))
            .map(|(name, entry)| (name.clone(), entry.info.partitions));
        configured.chain(created).collect()
    };
    let names = |shape: &[(StreamName, u32)]| shape.iter().map(|(name, _)| name.clone()).collect();
    let mut changes = streams.subscribe();
    let mut last = shape(&changes.borrow_and_update());
    let (archived, following) = watch::channel(names(&last));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let now = shape(&changes.borrow_and_update());
            if now != last {
                archived.send_replace(names(&now));
                last = now;
            }
        }
    });
    following
}

/// `keys` (the configured admin keys), accepting also the keys issued into `store` (the
/// analytics database, on the node's pool) and, with `[auth.jwt]`, JWTs.
///
/// # Errors
/// When `[auth.jwt]` is invalid or its JWKS file unreadable.
async fn credentials(
    keys: ApiKeys,
    store: Arc<dyn tributary_core::ports::KeyStore>,
    config: &Config,
) -> anyhow::Result<ApiKeys> {
    let mut keys = keys
        .with_store(store, config.auth.key_cache_ttl)
        .with_anonymous(config.auth.anonymous_scopes.iter().copied());
    if !keys.anonymous_scopes().is_empty() {
        tracing::warn!(
            scopes = ?keys.anonymous_scopes(),
            "[auth] anonymous_scopes: requests without a credential are let through"
        );
    }
    if let Some(jwt) = &config.auth.jwt {
        let verifier = tributary_gateway::JwtVerifier::new(jwt.settings()?)
            .await
            .context("[auth.jwt]")?;
        keys = keys.with_jwt(verifier);
    }
    Ok(keys)
}

/// The source of each lookup's table, by (pipeline, lookup). Nothing is read yet: each
/// pipeline's task loads its tables when it starts.
fn references(
    pipelines: &[tributary_core::pipeline::PipelineSpec],
) -> anyhow::Result<tributary_engine::References> {
    let mut references = tributary_engine::References::new();
    for spec in pipelines {
        for lookup in &spec.lookups {
            let source = registry::reference(&lookup.source)
                .with_context(|| format!("pipeline {}: lookup {}", spec.name, lookup.name))?;
            references.insert((spec.name.clone(), lookup.name.clone()), source);
        }
    }
    Ok(references)
}

/// Refuses to start a pipeline whose stored state was written by another definition of it,
/// before any task runs: the error says what to do (a new name, or `tributary reset`).
async fn check_stored_state(
    ports: &tributary_core::ports::Ports,
    pipelines: &[tributary_core::pipeline::PipelineSpec],
) -> anyhow::Result<()> {
    for spec in pipelines {
        // The whole pipeline's checkpoint, or its first shard's: every shard is written by
        // the same definition.
        for task in [
            spec.name.clone(),
            tributary_engine::shard_task(&spec.name, 0),
        ] {
            let stored = ports
                .analytics
                .load_checkpoint(&task)
                .await
                .with_context(|| format!("cannot read the checkpoint of pipeline {}", spec.name))?;
            if let Some(checkpoint) = stored {
                WindowOperator::check_state(spec, &checkpoint.state)?;
            }
        }
    }
    Ok(())
}

/// Deletes the checkpoint, state and results of `pipeline` in the analytics store that
/// `config` names, fencing any processor still running it: the pipeline starts over from
/// the beginning of its streams at its next start.
///
/// # Errors
/// When the config is invalid or the analytics store cannot be reached.
pub async fn reset(config: &Config, pipeline: &str) -> anyhow::Result<()> {
    let checked = config.validate()?;
    let analytics = registry::analytics(&config.analytics)
        .await
        .context("cannot connect the analytics store")?;
    // Its shards too (one per partition of its sources), whichever way it last ran.
    let shards = checked
        .pipelines
        .iter()
        .filter(|p| p.name == pipeline)
        .flat_map(|p| &p.sources)
        .filter_map(|source| config.streams.iter().find(|s| s.name == source.as_str()))
        .map(|stream| stream.partitions)
        .max()
        .unwrap_or(0);
    let tasks = std::iter::once(pipeline.to_owned())
        .chain((0..shards).map(|p| tributary_engine::shard_task(pipeline, p)));
    for task in tasks {
        analytics
            .reset(&task)
            .await
            .with_context(|| format!("cannot reset pipeline {pipeline}"))?;
    }
    tracing::info!(
        pipeline,
        "pipeline reset: its checkpoint, state and results are deleted"
    );
    Ok(())
}

/// How often histograms are compacted when nobody scrapes `/metrics`.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed on first use, with a thread doing its
/// upkeep (draining histogram samples) so memory stays bounded between scrapes.
///
/// # Panics
/// Never in practice: only if another metrics recorder was installed first.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Histograms (aggregatable across instances) with buckets chosen for each
            // latency (`telemetry`). Setting buckets fails only when they are empty.
            let recorder = crate::telemetry::builder()
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            let process = crate::telemetry::describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                        process.collect();
                        upkeep.run_upkeep();
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "cannot start metrics upkeep"
                );
            }
            handle
        })
        .clone()
}

/// A token cancelled on Ctrl-C or SIGTERM.
#[must_use]
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot watch SIGTERM");
                        let _ = ctrl_c.await;
                        cancel.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: draining HTTP, finishing the current checkpoint");
        cancel.cancel();
    });
    token
}

/// The gateway's rate limits, as `[rate_limit]` configures them.
///
/// # Errors
/// A quota out of range, or `backend = "redis"` without a Redis cache.
fn rate_limit(config: &Config) -> anyhow::Result<tributary_gateway::RateLimit> {
    let limits = &config.rate_limit;
    if !limits.enabled {
        return Ok(tributary_gateway::RateLimit::off());
    }
    let redis = limits.redis(&config.cache)?;
    let limiter = tributary_connectors::rate_limit::build(redis, limits.max_keys)
        .context("cannot build the rate limiter")?;
    tracing::info!(
        backend = if redis.is_some() { "redis" } else { "memory" },
        "rate limits on"
    );
    Ok(tributary_gateway::RateLimit::new(
        limiter,
        limits.settings()?,
    ))
}
