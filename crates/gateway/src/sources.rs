//! Sources of events other than the HTTP route: registered, started and stopped by name,
//! each with its own health.
//!
//! Contract:
//! - A [`Source`] has a name (unique in its [`Sources`]; a metric label and the key of its
//!   health) and runs until it has nothing more to read (a file) or until it is cancelled
//!   (a broker), handing what it reads to the [`IngestService`].
//! - [`Sources::start`] runs every registered source on its own task; [`Sources::stop`]
//!   (or the cancellation token given to `start`) asks them all to stop, and the join set
//!   returned by `start` ends when they have. A source that fails does not stop the others.
//! - Each source's health is `starting`, `running`, `paused` (it read a batch it cannot
//!   store yet, the log or the document store being unavailable: it waits, acknowledging
//!   nothing to its broker, and tries again), `done`, `stopped` or `failed`, as
//!   [`Sources::health`] returns and `/readyz` shows under `sources`; a failed source makes
//!   the node not ready. It also sets the gauge `tributary_source_up{source}` (1 while
//!   running, 0 otherwise).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestService;

/// Why a source stopped before its end.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A source's state, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Registered, not running yet.
    Starting,
    /// Reading.
    Running,
    /// Holding a batch it cannot store yet (why), trying again.
    Paused(String),
    /// It read everything it had to (a file at its end).
    Done,
    /// Stopped when asked to.
    Stopped,
    /// It stopped on an error.
    Failed(String),
}

impl Health {
    /// The state's name, as shown.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused(_) => "paused",
            Self::Done => "done",
            Self::Stopped => "stopped",
            Self::Failed(_) => "failed",
        }
    }
}

/// A source of events.
#[async_trait]
pub trait Source: Send + Sync + fmt::Debug {
    /// Its name: unique among the registered sources, a metric label.
    fn name(&self) -> &str;

    /// Reads and hands events to `ingest` until it has nothing more to read (then `Ok`) or
    /// `cancel` is cancelled (then it stops at a point where it can resume, and returns
    /// `Ok`). It may report progress through `health` ([`HealthReporter::set`]).
    ///
    /// # Errors
    /// Why it stopped early; it is then `failed`.
    async fn run(
        &self,
        ingest: IngestService,
        health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError>;
}

/// Sets one source's health.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    name: Arc<str>,
    states: Arc<RwLock<BTreeMap<String, Health>>>,
}

impl HealthReporter {
    /// Records `health` for this source.
    pub fn set(&self, health: Health) {
        let up = if health == Health::Running { 1.0 } else { 0.0 };
        metrics::gauge!("tributary_source_up", "source" => self.name.to_string()).set(up);
        self.states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.name.to_string(), health);
    }
}

/// The registered sources and their health; cheap to clone (clones share both).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    registered: Arc<RwLock<Vec<Arc<dyn Source>>>>,
    states: Arc<RwLock<BTreeMap<String, Health>>>,
    cancel: CancellationToken,
}

/// A source registered twice under one name.
#[derive(Debug, thiserror::Error)]
#[error("a source named {0:?} is registered already")]
pub struct DuplicateSource(pub String);

impl Sources {
    /// Registers `source`, `starting`.
    ///
    /// # Errors
    /// When a source of the same name is registered.
    pub fn register(&self, source: Arc<dyn Source>) -> Result<(), DuplicateSource> {
        let mut registered = self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let name = source.name().to_owned();
        if registered.iter().any(|s| s.name() == name) {
            return Err(DuplicateSource(name));
        }
        registered.push(source);
        self.reporter(&name).set(Health::Starting);
        Ok(())
    }

    /// Starts every registered source on its own task; they stop when `cancel` (or
    /// [`Sources::stop`]) is cancelled. Each task ends with its source's name and outcome.
    pub fn start(
        &self,
        ingest: &IngestService,
        cancel: &CancellationToken,
    ) -> JoinSet<(String, Result<(), SourceError>)> {
        let mut tasks = JoinSet::new();
        let registered = self
            .registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for source in registered {
            let name = source.name().to_owned();
            let health = self.reporter(&name);
            let ingest = ingest.clone();
            let token = cancel.child_token();
            let stop = self.cancel.clone();
            tasks.spawn(async move {
                health.set(Health::Running);
                let run = source.run(ingest, health.clone(), token.clone());
                tokio::pin!(run);
                // Asked to stop, the source gets to finish at a point it can resume from.
                let outcome = tokio::select! {
                    outcome = &mut run => outcome,
                    () = stop.cancelled() => {
                        token.cancel();
                        run.await
                    }
                };
                health.set(match &outcome {
                    Ok(()) if token.is_cancelled() => Health::Stopped,
                    Ok(()) => Health::Done,
                    Err(error) => Health::Failed(error.to_string()),
                });
                (name, outcome)
            });
        }
        tasks
    }

    /// Asks every running source to stop.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Each registered source's health, by name.
    #[must_use]
    pub fn health(&self) -> BTreeMap<String, Health> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reporter(&self, name: &str) -> HealthReporter {
        HealthReporter {
            name: name.into(),
            states: self.states.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use tributary_core::ports::Ports;

    use super::*;

    /// A source that ends (or fails, or waits to be stopped) as told.
    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        outcome: Option<&'static str>,
        wait: bool,
    }

    #[async_trait]
    impl Source for Scripted {
        fn name(&self) -> &str {
            self.name
        }

        async fn run(
            &self,
            _ingest: IngestService,
            _health: HealthReporter,
            cancel: CancellationToken,
        ) -> Result<(), SourceError> {
            if self.wait {
                cancel.cancelled().await;
            }
            match self.outcome {
                Some(why) => Err(why.into()),
                None => Ok(()),
            }
        }
    }

    async fn ingest(dir: &std::path::Path) -> IngestService {
        use tributary_connectors::memory::{MemoryCache, MemoryCacheConfig};
        use tributary_connectors::redb::{RedbLog, RedbLogConfig};
        use tributary_connectors::sqlite::{SqliteConfig, SqliteStore};
        let store = Arc::new(
            SqliteStore::connect(&SqliteConfig {
                path: dir.join("store.sqlite"),
            })
            .await
            .unwrap(),
        );
        let ports = Ports {
            log: Arc::new(
                RedbLog::open(&RedbLogConfig {
                    path: dir.join("log.redb"),
                })
                .unwrap(),
            ),
            analytics: store.clone(),
            documents: store,
            cache: Arc::new(MemoryCache::new(&MemoryCacheConfig::default())),
        };
        IngestService::new(ports, std::time::Duration::from_secs(60))
    }

    #[tokio::test]
    async fn sources_run_by_name_with_their_health() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = ingest(dir.path()).await;
        let sources = Sources::default();
        for (name, outcome, wait) in [
            ("ends", None, false),
            ("fails", Some("broken"), false),
            ("waits", None, true),
        ] {
            let source = Scripted {
                name,
                outcome,
                wait,
            };
            sources.register(Arc::new(source)).unwrap();
        }
        let again = Scripted {
            name: "ends",
            outcome: None,
            wait: false,
        };
        assert!(
            sources.register(Arc::new(again)).is_err(),
            "names are unique"
        );
        assert!(sources.health().values().all(|h| *h == Health::Starting));

        let mut tasks = sources.start(&ingest, &CancellationToken::new());
        let mut ended = Vec::new();
        for _ in 0..2 {
            let (name, outcome) = tasks.join_next().await.unwrap().unwrap();
            ended.push((name, outcome.is_ok()));
        }
        ended.sort();
        assert_eq!(ended, [("ends".into(), true), ("fails".into(), false)]);
        let health = sources.health();
        assert_eq!(health["ends"], Health::Done);
        assert_eq!(health["fails"], Health::Failed("broken".into()));
        assert_eq!(health["waits"], Health::Running);

        sources.stop();
        let (name, outcome) = tasks.join_next().await.unwrap().unwrap();
        assert_eq!(name, "waits");
        assert!(outcome.is_ok());
        assert_eq!(sources.health()["waits"], Health::Stopped);
    }
}
