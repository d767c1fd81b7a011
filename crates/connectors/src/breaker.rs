//! A circuit breaker with a deadline per call: how the adapter of a remote system fails
//! fast while that system is down, and finds out by itself when it is back. One breaker per
//! adapter guards the calls that someone waits on — the gateway's queries (PostgreSQL,
//! MongoDB), every Redis command, Kafka appends — and never the engine's checkpoints,
//! which have their own retries.
//!
//! Contract of [`Breaker::call`]:
//! - every call runs within the breaker's `timeout`; one that has not finished then is
//!   dropped (cancelled) and fails with `PortError::Unavailable` (source: [`TimedOut`]);
//! - **closed** (the start): calls go through. A call that fails `Unavailable` or times out
//!   opens the breaker. Any other outcome — success, or an error the system answered with
//!   (`Refused`, `Corrupt`, ...) — shows that the system is up;
//! - **open**, for `cool_down` after that failure: calls fail at once with `Unavailable`
//!   whose source is [`CircuitOpen`] (the rest of the cool-down, which the gateway sends as
//!   `Retry-After`), without touching the system;
//! - **half-open**, once the cool-down has passed: the next call goes through as the probe,
//!   while the others still fail at once; the probe's success closes the breaker, its
//!   failure opens it for another `cool_down`. A probe its caller cancels lets the next
//!   call probe;
//! - the outcome of a call that started before the breaker last opened is ignored: it says
//!   nothing about the system since.
//!
//! So while a system is down, a caller waits at most `timeout`, and most wait not at all;
//! once it is back, the first call after the cool-down finds out.
//!
//! Observability: the gauge `tributary_circuit_open{system}` (1 while open or half-open),
//! the counter `tributary_circuit_rejected_total{system}` (calls failed at once); a warning
//! when the breaker opens (with the failure), an info line when it closes again (with how
//! long the system was down).

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tributary_core::ports::{CircuitOpen, PortError};

/// The default time a breaker stays open before a call probes the system again.
pub(crate) const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);

/// The serde default of every adapter's `cool_down`.
pub(crate) const fn default_cool_down() -> Duration {
    DEFAULT_COOL_DOWN
}

/// The source of the `Unavailable` error of a call that did not finish within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {after:?}")]
pub struct TimedOut {
    /// The timeout.
    pub after: Duration,
}

/// A configured timeout of zero: every call would fail.
#[derive(Debug, thiserror::Error)]
#[error("{setting} must be more than 0s")]
pub struct ZeroTimeout {
    /// The setting, such as `[analytics] query_timeout`.
    pub setting: &'static str,
}

/// A circuit breaker and the timeout of the calls it guards (see the module's contract).
#[derive(Debug)]
pub(crate) struct Breaker {
    /// The system behind it, in errors, logs and metrics: "postgres", "kafka", ...
    system: &'static str,
    timeout: Duration,
    cool_down: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// +1 each time the breaker opens: a call remembers the one it was admitted in.
    generation: u64,
    /// When the breaker opened after being closed.
    down_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    /// Calls fail at once until `until`; the first call after it is the probe.
    Open {
        until: Instant,
    },
    /// The probe is running; the other calls fail at once.
    Probing,
}

impl Breaker {
    /// A closed breaker whose calls take at most `timeout` each and which, once open,
    /// stays open for `cool_down`.
    ///
    /// # Errors
    /// [`PortError::Refused`] naming `setting` when `timeout` is zero.
    pub(crate) fn new(
        system: &'static str,
        setting: &'static str,
        timeout: Duration,
        cool_down: Duration,
    ) -> Result<Self, PortError> {
        if timeout.is_zero() {
            return Err(PortError::refused(system, ZeroTimeout { setting }));
        }
        metrics::gauge!("tributary_circuit_open", "system" => system).set(0.0);
        Ok(Self {
            system,
            timeout,
            cool_down,
            state: Mutex::new(State {
                phase: Phase::Closed,
                generation: 0,
                down_since: None,
            }),
        })
    }

    /// Runs `call` within the timeout, or fails at once while the breaker is open.
    pub(crate) async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, PortError>>,
    ) -> Result<T, PortError> {
        let mut ticket = self.admit().map_err(|open| {
            metrics::counter!("tributary_circuit_rejected_total", "system" => self.system)
                .increment(1);
            PortError::unavailable(self.system, open)
        })?;
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(PortError::unavailable(
                self.system,
                TimedOut {
                    after: self.timeout,
                },
            )),
        };
        match &outcome {
            Err(failure @ PortError::Unavailable { .. }) => ticket.finish(Some(failure)),
            _ => ticket.finish(None),
        }
        outcome
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or says how long calls still fail at once.
    fn admit(&self) -> Result<Ticket<'_>, CircuitOpen> {
        let now = Instant::now();
        let mut state = self.state();
        let probe = match state.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < until => {
                return Err(CircuitOpen {
                    retry_after: until - now,
                });
            }
            Phase::Open { .. } => {
                state.phase = Phase::Probing;
                true
            }
            Phase::Probing => {
                return Err(CircuitOpen {
                    retry_after: self.cool_down,
                });
            }
        };
        Ok(Ticket {
            breaker: self,
            generation: state.generation,
            probe,
            finished: false,
        })
    }

    /// Opens the breaker after `failure` of a current call.
    fn open(&self, state: &mut State, failure: &PortError) {
        let now = Instant::now();
        state.generation += 1;
        state.phase = Phase::Open {
            until: now + self.cool_down,
        };
        if state.down_since.is_none() {
            state.down_since = Some(now);
            metrics::gauge!("tributary_circuit_open", "system" => self.system).set(1.0);
            tracing::warn!(
                system = self.system,
                cool_down_ms = u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX),
                error = failure as &dyn std::error::Error,
                "circuit breaker open: calls fail at once until a probe succeeds"
            );
        } else {
            tracing::debug!(
                system = self.system,
                error = failure as &dyn std::error::Error,
                "circuit breaker probe failed"
            );
        }
    }
}

/// A call let through by [`Breaker::admit`]; dropped unfinished, it was cancelled.
struct Ticket<'a> {
    breaker: &'a Breaker,
    generation: u64,
    /// Whether it is the probe of a half-open breaker.
    probe: bool,
    finished: bool,
}

impl Ticket<'_> {
    /// Records the call's outcome: `Some(failure)` when the system is unavailable.
    fn finish(&mut self, failure: Option<&PortError>) {
        self.finished = true;
        let breaker = self.breaker;
        let mut state = breaker.state();
        if state.generation != self.generation {
            return; // admitted before the breaker last opened
        }
        match (state.phase, failure) {
            (Phase::Closed | Phase::Probing, Some(failure)) => breaker.open(&mut state, failure),
            (Phase::Probing, None) => {
                state.phase = Phase::Closed;
                let down_ms = state
                    .down_since
                    .take()
                    .map_or(0, |since| since.elapsed().as_millis());
                metrics::gauge!("tributary_circuit_open", "system" => breaker.system).set(0.0);
                tracing::info!(
                    system = breaker.system,
                    down_ms = u64::try_from(down_ms).unwrap_or(u64::MAX),
                    "circuit breaker closed: the system answers again"
                );
            }
            (Phase::Closed, None) | (Phase::Open { .. }, _) => {}
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.finished || !self.probe {
            return;
        }
        // The probe was cancelled: the next call probes.
        let mut state = self.breaker.state();
        if state.generation == self.generation && state.phase == Phase::Probing {
            state.phase = Phase::Open {
                until: Instant::now(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);
    const COOL_DOWN: Duration = Duration::from_secs(5);

    fn breaker() -> Breaker {
        Breaker::new("test", "[test] timeout", TIMEOUT, COOL_DOWN).unwrap()
    }

    fn down() -> Result<(), PortError> {
        Err(PortError::unavailable(
            "test",
            std::io::Error::other("down"),
        ))
    }

    /// Opens `breaker` with a failure and lets its cool-down pass: the next call probes.
    async fn half_open(breaker: &Breaker) {
        let _ = breaker.call(async { down() }).await;
        tokio::time::advance(COOL_DOWN).await;
    }

    /// A call that succeeds once `released` is sent to.
    async fn held(released: tokio::sync::oneshot::Receiver<()>) -> Result<(), PortError> {
        let _ = released.await;
        Ok(())
    }

    /// The rest of the cool-down of a call failed at once, or `None` for any other outcome.
    fn rejected<T: std::fmt::Debug>(outcome: &Result<T, PortError>) -> Option<Duration> {
        match outcome {
            Err(error) => error.retry_after(),
            Ok(_) => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_opens_it_for_the_cool_down_then_one_probe_closes_it() {
        let breaker = breaker();
        let calls = AtomicUsize::new(0);
        // Counts the calls that run, not those made.
        let counted = |outcome: Result<(), PortError>| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                outcome
            }
        };
        assert!(breaker.call(counted(Ok(()))).await.is_ok());
        let failed = breaker.call(counted(down())).await;
        assert!(matches!(failed, Err(PortError::Unavailable { .. })));
        assert_eq!(
            rejected(&failed),
            None,
            "the failure itself is the driver's"
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        let open = breaker.call(counted(Ok(()))).await;
        assert_eq!(rejected(&open), Some(Duration::from_secs(4)));
        assert!(matches!(
            open,
            Err(PortError::Unavailable { system: "test", .. })
        ));
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "an open breaker calls nothing"
        );

        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(breaker.call(counted(Ok(()))).await.is_ok(), "the probe");
        assert!(breaker.call(counted(Ok(()))).await.is_ok(), "closed again");
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let breaker = breaker();
        half_open(&breaker).await;
        assert_eq!(rejected(&breaker.call(async { down() }).await), None);
        let open = breaker.call(async { Ok(()) }).await;
        assert_eq!(rejected(&open), Some(COOL_DOWN));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_a_failure() {
        let breaker = breaker();
        let started = Instant::now();
        let outcome = breaker
            .call(std::future::pending::<Result<(), PortError>>())
            .await;
        assert_eq!(started.elapsed(), TIMEOUT);
        let Err(PortError::Unavailable { source, .. }) = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            source.downcast_ref::<TimedOut>(),
            Some(&TimedOut { after: TIMEOUT })
        );
        assert_eq!(
            rejected(&breaker.call(async { Ok(()) }).await),
            Some(COOL_DOWN)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_are_errors_keep_it_closed() {
        let breaker = breaker();
        for _ in 0..3 {
            let refused: Result<(), _> =
                Err(PortError::refused("test", std::io::Error::other("no")));
            assert!(matches!(
                breaker.call(async { refused }).await,
                Err(PortError::Refused { .. })
            ));
        }
        assert!(breaker.call(async { Ok(()) }).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_probe_runs_the_others_fail_at_once() {
        let breaker = breaker();
        half_open(&breaker).await;
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let probe = breaker.call(held(released));
        let others = async {
            tokio::task::yield_now().await;
            let other = breaker.call(async { Ok(()) }).await;
            release.send(()).unwrap();
            other
        };
        let (probe, other) = tokio::join!(probe, others);
        assert!(probe.is_ok());
        assert_eq!(rejected(&other), Some(COOL_DOWN));
        assert!(breaker.call(async { Ok(()) }).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_the_next_call_probe() {
        let breaker = breaker();
        half_open(&breaker).await;
        let cancelled = tokio::time::timeout(
            Duration::from_millis(10),
            breaker.call(std::future::pending::<Result<(), PortError>>()),
        )
        .await;
        assert!(cancelled.is_err());
        assert!(breaker.call(async { Ok(()) }).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_of_calls_older_than_the_opening_are_ignored() {
        let breaker = breaker();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // Admitted while closed, it succeeds only after another call opened the breaker.
        let slow = breaker.call(held(released));
        let failing = async {
            tokio::task::yield_now().await;
            let failed = breaker.call(async { down() }).await;
            release.send(()).unwrap();
            failed
        };
        let (slow, failed) = tokio::join!(slow, failing);
        assert!(slow.is_ok() && failed.is_err());
        let open = breaker.call(async { Ok(()) }).await;
        assert_eq!(rejected(&open), Some(COOL_DOWN), "still open");
    }

    #[test]
    fn a_zero_timeout_is_refused_naming_the_setting() {
        let Err(error) = Breaker::new("test", "[test] timeout", Duration::ZERO, COOL_DOWN) else {
            panic!("accepted")
        };
        assert!(matches!(error, PortError::Refused { .. }));
        assert!(
            tributary_core::dead_letter::error_chain(&error).contains("[test] timeout"),
            "{error:?}"
        );
    }
}
