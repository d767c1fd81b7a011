//! [`RedisRateLimiter`]: the [`RateLimiter`] port on Redis, shared by every gateway, one
//! round trip per check; and [`SyncedRateLimiter`], which decides in process on its view
//! of the counts on Redis and reports to Redis in the background.
//!
//! Contract (the same as the in-process limiter's, checked by
//! `tests/rate_limit_conformance.rs`): each check (or `check_all`, in one round trip) is one
//! atomic Lua script ([`GCRA_SCRIPT`]) that runs [`tributary_core::ports::gcra`] line by
//! line on each key; [`RedisRateLimiter::report`], the same script, first counts requests a
//! gateway admitted on its own (`crate::rate_limit::SyncedRateLimiter`). Each key is
//! `{key_prefix}rate:{key}`, which holds the key's TAT in microseconds of the **server's**
//! clock (`TIME` inside the script: the gateways' clocks do not matter) and expires
//! (`PX`) when the TAT has passed. The script is sent as `EVALSHA`, and loaded once more
//! when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`): the `redis`
//! crate's `Script`.
//!
//! The connection is made at the first check, not at construction, so that a gateway
//! starts while Redis is down (its requests are then limited in process, see
//! `crate::rate_limit`). Every check, connecting included, runs within `command_timeout`
//! through this limiter's own circuit breaker (`crate::breaker`, system
//! `redis-rate-limit`): while Redis is down, checks fail at once with `Unavailable`.
//!
//! Contract of [`SyncedRateLimiter`] (`[rate_limit] sync_interval` above zero), the
//! approach of Kong's `sync_rate` and Envoy's local-and-global limits, with a bound:
//! - each check runs [`gcra`] on this process's *view* of the key: its TAT on Redis as last
//!   read, plus the requests this process admitted since; no round trip;
//! - every `sync_interval`, and as soon as a key has used half its *local share*
//!   ([`SyncSettings::local_share`]), one script ([`RedisRateLimiter::report`]) counts on
//!   Redis the requests admitted here and reads each key used back, so that the view
//!   catches up with the other gateways;
//! - a process never holds more than its local share of a key uncounted on Redis: a
//!   request the view would allow past it is decided by Redis, exactly, in one round trip
//!   that also reports the rest. A request the view refuses is refused, with the view's
//!   `retry_after` (the view never runs ahead of Redis: it only misses the other gateways'
//!   latest requests);
//! - so, with `g` gateways and a share of `s` requests, a key is admitted over any span `t`
//!   at most `burst + rate × t + (g − 1) × s` times, where the exact limiter admits
//!   `burst + rate × t`: each other gateway may hold up to `s` requests the deciding one
//!   has not seen. Requests admitted past the quota are counted all the same (the key's
//!   TAT moves past the burst), so they are paid back and the long-run rate is the
//!   quota's. One gateway alone decides as the exact limiter does;
//! - when a report fails (Redis down), the counts it carried are kept for the next one,
//!   and checks go to Redis directly (failing at once while its breaker is open, so that
//!   `crate::rate_limit::FallbackRateLimiter` decides them in process, as in the exact
//!   mode) until Redis answers one.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use ::redis::Script;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use moka::future::Cache as Moka;
use tokio::sync::{Notify, OnceCell};
use tributary_core::ports::{Decision, PortError, Quota, RateLimiter, check_one, gcra};

use super::cache::{redacted, redis_error};
use super::config::RedisConfig;
use crate::breaker::Breaker;
use crate::rate_limit::SyncSettings;

/// The system name of this adapter's errors and circuit breaker (apart from the cache's,
/// so that one's state does not hide the other's).
const SYSTEM: &str = "redis-rate-limit";

/// One GCRA step per key, atomically, on the server's clock. `KEYS[i]`: a key;
/// `ARGV[4i - 3]`: its quota's emission interval, `ARGV[4i - 2]`: `burst × interval`, both in
/// microseconds; `ARGV[4i - 1]`: requests a gateway admitted on its own and reports now
/// (counted first, unconditionally: they were answered already); `ARGV[4i]`: `1` to decide
/// one more request, `0` to only count and read. Returns `{allowed (0|1), backlog,
/// retry_after}` per key, flattened, in microseconds, as
/// [`tributary_core::ports::Decision::from_backlog`] reads them (a key only counted is
/// "allowed", with its backlog). Microseconds since 1970 stay below 2^53, so Lua's doubles
/// hold them exactly; `%d` writes them without an exponent.
pub const GCRA_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local function store(key, tat)
  redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
end
local result = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[4 * i - 3])
  local span = tonumber(ARGV[4 * i - 2])
  local reported = tonumber(ARGV[4 * i - 1])
  local decide = ARGV[4 * i] == '1'
  local tat = now
  local stored = redis.call('GET', key)
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  tat = tat + reported * interval
  local new_tat = tat + interval
  local allow_at = new_tat - span
  if decide and now >= allow_at then
    store(key, new_tat)
    result[#result + 1] = 1
    result[#result + 1] = new_tat - now
    result[#result + 1] = 0
  else
    if reported > 0 then
      store(key, tat)
    end
    result[#result + 1] = decide and 0 or 1
    result[#result + 1] = tat - now
    result[#result + 1] = decide and allow_at - now or 0
  end
end
return result
";

/// What a gateway tells Redis about one key, in [`RedisRateLimiter::report`].
#[derive(Debug, Clone, Copy)]
pub struct KeyReport<'a> {
    /// The key.
    pub key: &'a str,
    /// Its quota.
    pub quota: Quota,
    /// Requests admitted in this process that Redis has not counted yet: counted first,
    /// whatever the key's state (they were answered already).
    pub admitted: u32,
    /// Whether to decide one more request (as [`RateLimiter::check`] does), or only count
    /// `admitted` and read the key's backlog.
    pub decide: bool,
}

/// The rate limiter on Redis. Cheap to clone: clones share one connection and one breaker.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    connection: OnceCell<ConnectionManager>,
    config: RedisConfig,
    script: Script,
    breaker: Breaker,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("url", &redacted(&self.inner.config.url))
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the server of `config`, connecting at its first check.
    ///
    /// # Errors
    /// [`PortError::Refused`] for an invalid URL or a zero `command_timeout`.
    pub fn new(config: &RedisConfig) -> Result<Self, PortError> {
        let breaker = Breaker::new(
            SYSTEM,
            "[cache] command_timeout",
            config.command_timeout,
            config.cool_down,
        )?;
        let client = ::redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                config: config.clone(),
                script: Script::new(GCRA_SCRIPT),
                breaker,
            }),
        })
    }

    /// The shared connection, made on first use (a failed attempt is retried by the next
    /// call the breaker lets through).
    async fn connection(&self) -> Result<ConnectionManager, PortError> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.config.command_timeout))
                    .set_response_timeout(Some(inner.config.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(100));
                let connection =
                    ConnectionManager::new_with_config(inner.client.clone(), manager_config)
                        .await
                        .map_err(redis_error)?;
                tracing::info!(url = %redacted(&inner.config.url), "rate limiter connected to redis");
                Ok(connection)
            })
            .await
            .cloned()
    }

    /// Counts and decides `reports`, in one round trip (one script): a decision per report,
    /// in order; for a report that does not `decide`, an allowed one whose `reset` is the
    /// key's backlog once `admitted` is counted.
    ///
    /// # Errors
    /// [`PortError::Unavailable`] while Redis cannot answer (or its breaker is open).
    pub async fn report(&self, reports: &[KeyReport<'_>]) -> Result<Vec<Decision>, PortError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.breaker.call(self.step(reports)).await
    }

    /// Runs the script for `reports`.
    async fn step(&self, reports: &[KeyReport<'_>]) -> Result<Vec<Decision>, PortError> {
        let mut connection = self.connection().await?;
        let prefix = &self.inner.config.key_prefix;
        let mut invocation = self.inner.script.prepare_invoke();
        for report in reports {
            invocation
                .key(format!("{prefix}rate:{}", report.key))
                .arg(report.quota.interval_micros())
                .arg(report.quota.span_micros())
                .arg(report.admitted)
                .arg(u8::from(report.decide));
        }
        let answer: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if answer.len() != 3 * reports.len() {
            return Err(PortError::corrupt(
                SYSTEM,
                UnexpectedAnswer {
                    values: answer.len(),
                    keys: reports.len(),
                },
            ));
        }
        let micros = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(reports
            .iter()
            .zip(answer.chunks_exact(3))
            .map(|(report, step)| {
                Decision::from_backlog(report.quota, step[0] == 1, micros(step[1]), micros(step[2]))
            })
            .collect())
    }
}

/// The script answered with a number of values that does not match its keys (a script of
/// another version under the same hash cannot happen; this guards the decoding).
#[derive(Debug, thiserror::Error)]
#[error("the rate-limit script answered {values} values for {keys} keys")]
struct UnexpectedAnswer {
    values: usize,
    keys: usize,
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError> {
        let mut decisions = self.check_all(&[(key, quota)]).await?;
        decisions
            .pop()
            .ok_or_else(|| PortError::corrupt(SYSTEM, UnexpectedAnswer { values: 0, keys: 1 }))
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        let reports: Vec<KeyReport<'_>> = checks
            .iter()
            .map(|&(key, quota)| KeyReport {
                key,
                quota,
                admitted: 0,
                decide: true,
            })
            .collect();
        self.report(&reports).await
    }
}

/// The most keys one report carries (one script run: Redis serves nothing else meanwhile).
const REPORT_KEYS: usize = 500;

/// How long an unused key's view is kept: forgetting it only costs a fresh view, which
/// Redis corrects at the next report.
const VIEW_IDLE: Duration = Duration::from_secs(60);

/// A limiter deciding in process on its view of the counts on Redis (see the module's
/// contract). Cheap to clone: clones share their views and their reporting task.
#[derive(Clone)]
pub struct SyncedRateLimiter {
    shared: Arc<Synced>,
}

struct Synced {
    redis: RedisRateLimiter,
    settings: SyncSettings,
    views: Moka<String, Arc<Mutex<View>>>,
    /// The keys checked since the last report, for the next one.
    listed: Mutex<Vec<Listed>>,
    /// Wakes the reporting task before its interval is over.
    wake: Arc<Notify>,
    /// False after a report failed, until Redis answers again.
    in_sync: AtomicBool,
    /// The clock's zero.
    origin: Instant,
}

/// A key to report.
struct Listed {
    key: String,
    quota: Quota,
    view: Arc<Mutex<View>>,
}

/// This process's view of one key.
#[derive(Debug, Default)]
struct View {
    /// The key's TAT, in microseconds since the limiter's origin: Redis's as last read,
    /// plus the requests admitted here since.
    tat: u64,
    /// Requests admitted here that no report has carried yet.
    pending: u32,
    /// Requests carried by reports not answered yet.
    in_flight: u32,
    /// Whether the key is listed for the next report.
    listed: bool,
}

impl View {
    /// The GCRA on the view at `now`: `None` when the request would be allowed but this
    /// process already holds `share` requests uncounted (Redis must decide it).
    fn decide(&mut self, quota: Quota, now: u64, share: u32) -> Option<Decision> {
        let (decision, new_tat) = gcra(quota, now, Some(self.tat));
        let Some(new_tat) = new_tat else {
            return Some(decision);
        };
        if self.pending + self.in_flight >= share {
            return None;
        }
        self.tat = new_tat;
        self.pending += 1;
        Some(decision)
    }

    /// Moves the pending requests to a report, and returns how many. A report that also
    /// `decides` a request holds it in flight too, as if allowed, until Redis answers.
    fn take_pending(&mut self, decides: bool) -> u32 {
        let taken = std::mem::take(&mut self.pending);
        self.in_flight += taken + u32::from(decides);
        taken
    }

    /// Redis answered `report` with the key's `backlog` (at `now`, about): the view is
    /// Redis's, plus what is still uncounted here.
    fn absorb(&mut self, report: &KeyReport<'_>, now: u64, backlog: Duration) {
        self.in_flight = self
            .in_flight
            .saturating_sub(report.admitted + u32::from(report.decide));
        let backlog = u64::try_from(backlog.as_micros()).unwrap_or(u64::MAX);
        let uncounted = u64::from(self.pending + self.in_flight) * report.quota.interval_micros();
        self.tat = now.saturating_add(backlog).saturating_add(uncounted);
    }

    /// `report` failed: the requests it carried are pending again.
    fn restore(&mut self, report: &KeyReport<'_>) {
        self.in_flight = self
            .in_flight
            .saturating_sub(report.admitted + u32::from(report.decide));
        self.pending += report.admitted;
    }
}

impl fmt::Debug for SyncedRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncedRateLimiter")
            .field("redis", &self.shared.redis)
            .field("settings", &self.shared.settings)
            .field("in_sync", &self.shared.in_sync.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SyncedRateLimiter {
    /// A limiter on `redis`, reporting as `settings` say (an interval above zero), keeping
    /// at most `max_keys` views.
    ///
    /// # Panics
    /// Outside a Tokio runtime: the reports run on a task of their own, which ends when
    /// the last clone of this limiter is dropped.
    #[must_use]
    pub fn new(redis: RedisRateLimiter, settings: SyncSettings, max_keys: u64) -> Self {
        let shared = Arc::new(Synced {
            redis,
            settings,
            views: Moka::builder()
                .max_capacity(max_keys)
                .time_to_idle(VIEW_IDLE)
                .build(),
            listed: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            in_sync: AtomicBool::new(true),
            origin: Instant::now(),
        });
        tokio::spawn(report_every(
            Arc::downgrade(&shared),
            Arc::clone(&shared.wake),
            settings.interval,
        ));
        Self { shared }
    }

    /// Reports now what is pending, as the reporting task does every interval.
    pub async fn sync(&self) {
        self.shared.report().await;
    }
}

/// The reporting task: a report every `interval`, or sooner when woken, until the limiter
/// is gone.
async fn report_every(synced: Weak<Synced>, wake: Arc<Notify>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = wake.notified() => {}
        }
        let Some(synced) = synced.upgrade() else {
            return;
        };
        synced.report().await;
    }
}

impl Synced {
    /// Microseconds since the origin.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The view of `key`, listed for the next report.
    async fn view(&self, key: &str, quota: Quota) -> Arc<Mutex<View>> {
        let view = self
            .views
            .get_with_by_ref(key, async { Arc::default() })
            .await;
        let newly_listed = {
            let mut state = view.lock().unwrap_or_else(PoisonError::into_inner);
            !std::mem::replace(&mut state.listed, true)
        };
        if newly_listed {
            self.list(Listed {
                key: key.to_owned(),
                quota,
                view: Arc::clone(&view),
            });
        }
        view
    }

    fn list(&self, listed: Listed) {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listed);
    }

    /// One report of every listed key, in runs of [`REPORT_KEYS`].
    async fn report(&self) {
        let listed =
            std::mem::take(&mut *self.listed.lock().unwrap_or_else(PoisonError::into_inner));
        for run in listed.chunks(REPORT_KEYS) {
            let reports: Vec<KeyReport<'_>> = run
                .iter()
                .map(|listed| {
                    let mut view = listed.view.lock().unwrap_or_else(PoisonError::into_inner);
                    view.listed = false;
                    KeyReport {
                        key: &listed.key,
                        quota: listed.quota,
                        admitted: view.take_pending(false),
                        decide: false,
                    }
                })
                .collect();
            let views = run.iter().map(|listed| &listed.view);
            if self.send(&reports, views).await.is_err() {
                for listed in run {
                    let relist = {
                        let mut view = listed.view.lock().unwrap_or_else(PoisonError::into_inner);
                        !std::mem::replace(&mut view.listed, true)
                    };
                    if relist {
                        self.list(Listed {
                            key: listed.key.clone(),
                            quota: listed.quota,
                            view: Arc::clone(&listed.view),
                        });
                    }
                }
            }
        }
    }

    /// Sends `reports` (of `views`, in order) and brings the views in line with Redis's
    /// answers; on failure, their counts are pending again and checks go to Redis until
    /// it answers.
    async fn send<'v>(
        &self,
        reports: &[KeyReport<'_>],
        views: impl Iterator<Item = &'v Arc<Mutex<View>>>,
    ) -> Result<Vec<Decision>, PortError> {
        let answer = self.redis.report(reports).await;
        let now = self.now();
        match &answer {
            Ok(decisions) => {
                for ((report, view), decision) in reports.iter().zip(views).zip(decisions) {
                    view.lock().unwrap_or_else(PoisonError::into_inner).absorb(
                        report,
                        now,
                        decision.reset,
                    );
                }
            }
            Err(_) => {
                for (report, view) in reports.iter().zip(views) {
                    view.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .restore(report);
                }
            }
        }
        self.in_sync.store(answer.is_ok(), Ordering::Relaxed);
        answer
    }
}

#[async_trait]
impl RateLimiter for SyncedRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, PortError> {
        check_one(self, key, quota).await
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> Result<Vec<Decision>, PortError> {
        let synced = &self.shared;
        if !synced.in_sync.load(Ordering::Relaxed) {
            // The last report failed: Redis decides (its breaker fails at once while it is
            // down, so that the fallback does), and its first answer resumes the views.
            let decisions = synced.redis.check_all(checks).await?;
            synced.in_sync.store(true, Ordering::Relaxed);
            return Ok(decisions);
        }
        let now = synced.now();
        let mut decisions = Vec::with_capacity(checks.len());
        // The checks past this process's share: Redis decides them, in one round trip.
        let mut asked = Vec::new();
        let mut views = Vec::new();
        for &(key, quota) in checks {
            let view = synced.view(key, quota).await;
            let share = synced.settings.local_share(quota);
            let mut state = view.lock().unwrap_or_else(PoisonError::into_inner);
            match state.decide(quota, now, share) {
                Some(decision) => {
                    if 2 * state.pending >= share {
                        synced.wake.notify_one();
                    }
                    decisions.push(decision);
                }
                None => {
                    asked.push((
                        decisions.len(),
                        KeyReport {
                            key,
                            quota,
                            admitted: state.take_pending(true),
                            decide: true,
                        },
                    ));
                    drop(state);
                    views.push(view);
                    // Replaced by Redis's decision below.
                    decisions.push(Decision::exhausted(quota));
                }
            }
        }
        if asked.is_empty() {
            return Ok(decisions);
        }
        let reports: Vec<KeyReport<'_>> = asked.iter().map(|&(_, report)| report).collect();
        let answers = synced.send(&reports, views.iter()).await?;
        for ((index, _), answer) in asked.into_iter().zip(answers) {
            decisions[index] = answer;
        }
        Ok(decisions)
    }
}
