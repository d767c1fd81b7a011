//! The configuration file: what a user writes, checked into what the roles run.
//!
//! Sources, later ones winning: the built-in defaults (`config/defaults.toml`, compiled
//! in), the file given with `--config`, then environment variables
//! `TRIBUTARY__SECTION__KEY` (for example `TRIBUTARY__HTTP__LISTEN=0.0.0.0:9090`).
//! Unknown keys are errors, so a typo never goes unnoticed.
//!
//! A pipeline is declared field by field (`sources`, `filter`, `key`, `window`,
//! `aggregates`) or as one SQL statement (`sql`); [`Config::validate`] plans either with
//! [`tributary_core::plan`], so both say the same thing the same way.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tributary_connectors::registry::{AnalyticsConfig, CacheConfig, DocumentsConfig, LogConfig};
use tributary_core::StreamName;
use tributary_core::pipeline::{PipelineSpec, WindowSpec, millis};
use tributary_core::plan::{
    self, Definition, KeyDefinition, LookupDefinition, PlanError, PostgresTable,
};
use tributary_core::ports::Scope;

/// The built-in defaults.
const DEFAULTS: &str = include_str!("../../../config/defaults.toml");
/// The demo's configuration.
const DEMO: &str = include_str!("../../../config/demo.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server (gateway and ingestion).
    pub http: HttpConfig,
    /// The engine that runs pipelines.
    pub engine: EngineSection,
    /// The event log: `type = "embedded"` or `type = "kafka"`.
    pub log: LogConfig,
    /// Window results and checkpoints: `type = "sqlite"` or `type = "postgres"`.
    pub analytics: AnalyticsConfig,
    /// Raw events as documents: `type = "sqlite"` or `type = "mongodb"`.
    pub documents: DocumentsConfig,
    /// Live results: `type = "memory"` or `type = "redis"`.
    pub cache: CacheConfig,
    /// Rate limits of the `/v1` routes, per credential and per client address.
    pub rate_limit: RateLimitConfig,
    /// GraphQL at `/graphql`: its limits and options.
    pub graphql: GraphqlConfig,
    /// Credentials: issued API keys and JWT bearer tokens.
    pub auth: AuthConfig,
    /// Spans exported over OTLP.
    pub tracing: TracingConfig,
    /// The streams events can be sent to.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// The pipelines to run.
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
    /// Sources of events besides HTTP (`kind = "kafka"`), run by nodes with the ingest
    /// role; see [`crate::sources`].
    #[serde(default)]
    pub sources: Vec<crate::sources::SourceConfig>,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How far ahead of this node's clock an event's `ts` may be (such as `"1h"`); an event
    /// further ahead is refused with a 422, before it could move a watermark.
    #[serde(with = "humantime_serde")]
    pub max_ts_ahead: Duration,
    /// On shutdown (SIGTERM, Ctrl-C), how long the node keeps serving after `/readyz`
    /// turned 503, before it closes its listener (such as `"5s"`): long enough for load
    /// balancers to see it and stop sending it requests (with `deploy/haproxy`'s health
    /// checks, 1.25 s at most). `"0s"` when no load balancer is in front. A node serving no
    /// `/v1` route (`--role process`) does not wait.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// On shutdown, how long the requests in flight when the listener closes may take to
    /// finish (such as `"10s"`); those still running then are cut off. The process stops
    /// within `drain_delay` + `drain_timeout` (plus a processor's last checkpoint).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long the server waits for a request's head (request line and header fields) to
    /// arrive in full (such as `"10s"`); then it closes the connection without an answer. It
    /// is also how long an idle keep-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a request body may take to arrive in full once the gateway reads it (such
    /// as `"30s"`); then the request is answered 408 and its connection closed. A body of
    /// `max_body_bytes` must arrive at `max_body_bytes / body_timeout` at least.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// The most events one ingestion request may hold; a request with more is answered 413
    /// (its body is not read further).
    pub max_events_per_request: usize,
    /// The most bytes of request bodies the node holds at once (at least
    /// `max_body_bytes`): a body counts its `Content-Length`, or `max_body_bytes` when it
    /// is compressed or has none. A request that finds no room waits up to `body_timeout`,
    /// then is answered 503 with `Retry-After`.
    pub max_bytes_in_flight: usize,
    /// The most bytes of items in one page of `GET /v1/streams/{stream}/events` or `GET
    /// /v1/dead-letters` (a page holds at least one item; `next_cursor` continues after it).
    pub max_page_bytes: usize,
    /// The origins browsers may call the API from, such as `["https://app.example.com"]`,
    /// or `["*"]` for any; empty (the default): no CORS.
    pub cors_allowed_origins: Vec<String>,
    /// How long browsers may cache the answer to a CORS preflight (such as `"1h"`).
    #[serde(with = "humantime_serde")]
    pub cors_max_age: Duration,
    /// How long an answer of `GET /v1/pipelines/{name}/results` serves the same query
    /// again from memory (such as `"200ms"`): results may be that much older than the last
    /// checkpoint. `"0s"`: every query reads the analytics store.
    #[serde(with = "humantime_serde")]
    pub results_cache_ttl: Duration,
}

impl HttpConfig {
    /// The gateway's edge settings.
    #[must_use]
    pub fn edge(&self) -> tributary_gateway::EdgeSettings {
        tributary_gateway::EdgeSettings {
            max_events_per_request: self.max_events_per_request,
            body_timeout: self.body_timeout,
            max_bytes_in_flight: self.max_bytes_in_flight,
            max_page_bytes: self.max_page_bytes,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            cors_max_age: self.cors_max_age,
            results_cache_ttl: self.results_cache_ttl,
        }
    }
}

/// Spans exported over OTLP/HTTP (`crate::logging`): each HTTP request's (continuing its
/// W3C `traceparent`), and those of ingestion, log appends, pipeline batches, checkpoints
/// and queries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (such as `"http://127.0.0.1:4318"`; spans go to
    /// its `/v1/traces`). Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` when that is set, else no
    /// export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans and of the JSON log lines.
    pub service_name: String,
    /// The share of new traces exported, from 0.0 to 1.0; a request continuing a trace
    /// follows its caller's decision (the `traceparent`'s sampled flag).
    pub sampling_ratio: f64,
}

impl Default for TracingConfig {
    /// No endpoint, the service `tributary`, every trace: what a command that reads no
    /// config file uses (with `OTEL_EXPORTER_OTLP_ENDPOINT`).
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "tributary".to_owned(),
            sampling_ratio: 1.0,
        }
    }
}

impl TracingConfig {
    /// The `[tracing]` section of `file` as [`Config::load`] would read it, for logging,
    /// which starts before the whole file is loaded and checked; the defaults when the
    /// section does not load (the whole file then fails to load, and says why).
    #[must_use]
    pub fn of_file(file: &Path) -> Self {
        with_env(Figment::from(Toml::string(DEFAULTS)).merge(Toml::file(file)))
            .extract_inner("tracing")
            .unwrap_or_default()
    }

    /// Checks the endpoint and the ratio.
    fn check(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            bail!(
                "[tracing] sampling_ratio must be between 0.0 and 1.0, not {}",
                self.sampling_ratio
            );
        }
        if self.service_name.is_empty() {
            bail!("[tracing] service_name must not be empty");
        }
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        if !cfg!(feature = "otlp") {
            bail!("[tracing] otlp_endpoint needs the `otlp` feature, which this build leaves out");
        }
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            bail!("[tracing] otlp_endpoint must be an http:// or https:// URL, not {endpoint:?}");
        }
        Ok(())
    }
}

/// Rate limits of the `/v1` routes (`tributary_gateway::rate_limit`): each request counts
/// against its credential's quota for the route's scope and against its client address's
/// quota; past either, it is answered 429 with `Retry-After`. A quota allows `burst`
/// requests at once, then `rate` per `period` (the GCRA).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether requests are limited.
    pub enabled: bool,
    /// Where the counts live: `"redis"` (shared by every gateway; needs `[cache] type =
    /// "redis"`, whose server it uses; while Redis cannot answer, each gateway counts in
    /// process), `"memory"` (in this process), or `"auto"`: Redis when the cache is Redis.
    pub backend: RateLimitBackend,
    /// The most keys (credentials and addresses) counted in process; past it, the least
    /// used are forgotten.
    pub max_keys: u64,
    /// With Redis: how often each gateway reports the requests it admitted on its own
    /// (such as `"50ms"`), deciding in process meanwhile on its view of the counts;
    /// `"0s"`: every request is one round trip to Redis, exactly. See
    /// `local_share_percent` for what a gateway may admit beyond the quota.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// With a `sync_interval`: the percentage (1 to 100) of a quota's burst a gateway may
    /// admit on a key before Redis has counted it (rounded up, at least 1 request). With
    /// `g` gateways, a key may get up to `(g - 1) ×` that share more than its quota
    /// allows, which it then pays back.
    pub local_share_percent: u32,
    /// Addresses of the load balancers in front (such as HAProxy's), whose
    /// `X-Forwarded-For` names the client; a request from any other peer is counted
    /// against the peer's address.
    pub trusted_proxies: Vec<IpAddr>,
    /// The quota of one credential sending events.
    pub ingest: QuotaConfig,
    /// The quota of one credential reading.
    pub read: QuotaConfig,
    /// The quota of one credential managing keys.
    pub admin: QuotaConfig,
    /// The quota of one client address, whatever its credentials.
    pub address: QuotaConfig,
}

/// Where rate-limit counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// Redis when `[cache] type = "redis"`, else memory.
    Auto,
    /// Redis, shared by every gateway.
    Redis,
    /// This process.
    Memory,
}

/// A quota: `burst` requests at once, then `rate` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests per period, sustained.
    pub rate: u32,
    /// The period of `rate` (such as `"1s"` or `"1m"`).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Requests allowed at once after a quiet time.
    pub burst: u32,
}

impl RateLimitConfig {
    /// The gateway's settings.
    ///
    /// # Errors
    /// A quota with a zero, or out of range, naming it.
    pub fn settings(&self) -> anyhow::Result<tributary_gateway::RateLimitSettings> {
        let quota = |name: &str, q: QuotaConfig| {
            tributary_core::ports::Quota::new(q.rate, q.period, q.burst)
                .with_context(|| format!("[rate_limit] {name}"))
        };
        Ok(tributary_gateway::RateLimitSettings {
            ingest: quota("ingest", self.ingest)?,
            read: quota("read", self.read)?,
            admin: quota("admin", self.admin)?,
            address: quota("address", self.address)?,
            trusted_proxies: self.trusted_proxies.clone(),
        })
    }

    /// The Redis server the counts live in and how they are shared, `None` to count in
    /// process.
    ///
    /// # Errors
    /// `backend = "redis"` without `[cache] type = "redis"`, or a `local_share_percent`
    /// out of 1 to 100.
    pub fn redis<'a>(
        &self,
        cache: &'a CacheConfig,
    ) -> anyhow::Result<Option<tributary_connectors::rate_limit::SharedCounts<'a>>> {
        if !(1..=100).contains(&self.local_share_percent) {
            bail!("[rate_limit] local_share_percent must be between 1 and 100");
        }
        let redis = match (self.backend, cache) {
            (RateLimitBackend::Memory, _) | (RateLimitBackend::Auto, CacheConfig::Memory(_)) => {
                return Ok(None);
            }
            (RateLimitBackend::Auto | RateLimitBackend::Redis, CacheConfig::Redis(redis)) => redis,
            (RateLimitBackend::Redis, CacheConfig::Memory(_)) => bail!(
                "[rate_limit] backend = \"redis\" needs [cache] type = \"redis\" (its server keeps the counts)"
            ),
        };
        Ok(Some(tributary_connectors::rate_limit::SharedCounts {
            redis,
            sync: tributary_connectors::rate_limit::SyncSettings {
                interval: self.sync_interval,
                local_share_percent: self.local_share_percent,
            },
        }))
    }
}

/// Credentials (`tributary_gateway::auth`): issued API keys (kept in the analytics
/// database) and, when `[auth.jwt]` is present, JWT bearer tokens. Configured admin keys
/// come from `TRIBUTARY_BOOTSTRAP_API_KEY`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a node keeps an issued key it looked up (such as `"5s"`): a key revoked
    /// through another node still passes on this one for at most this long.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// JWT bearer tokens; absent: not accepted.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// The scopes of requests without any credential (`"read"`, `"ingest"`; never
    /// `"admin"`), as the principal `anonymous` of the `default` tenant: for public
    /// dashboards, or to measure what authentication costs. Empty (the default): such
    /// requests are answered 401.
    #[serde(default)]
    pub anonymous_scopes: Vec<Scope>,
}

/// JWT bearer tokens, verified against a JWKS (`[auth.jwt]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (exactly one of `jwks_file` and `jwks_url`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The identity provider's JWKS URL (its `jwks_uri`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The audience `aud` must hold.
    pub audience: String,
    /// The accepted signature algorithms, pinned (`none` is never accepted).
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<String>,
    /// The clock skew allowed on `exp` and `nbf` (whole seconds, such as `"30s"`).
    #[serde(default = "default_jwt_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim holding the scopes: a space-separated string (OAuth's `scope`) or a
    /// list; names other than `ingest`, `read` and `admin` are ignored.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// The claim holding the tenant; absent: every token's tenant is `default`.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// The least time between two reads of the JWKS caused by tokens of an unknown `kid`.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
}

fn default_jwt_algorithms() -> Vec<String> {
    vec!["RS256".to_owned()]
}

fn default_jwt_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_scopes_claim() -> String {
    "scope".to_owned()
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(30)
}

impl JwtConfig {
    /// The gateway's JWT settings.
    ///
    /// # Errors
    /// Without exactly one of `jwks_file` and `jwks_url`, or with an unknown algorithm.
    pub fn settings(&self) -> anyhow::Result<tributary_gateway::JwtSettings> {
        use tributary_gateway::JwksSource;
        let jwks = match (&self.jwks_file, &self.jwks_url) {
            (Some(file), None) => JwksSource::File(file.clone()),
            (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
                JwksSource::Url(url.clone())
            }
            (None, Some(url)) => bail!("[auth.jwt] jwks_url must be an http(s) URL, not {url:?}"),
            _ => bail!("[auth.jwt] needs exactly one of jwks_file and jwks_url"),
        };
        let algorithms = self
            .algorithms
            .iter()
            .map(|name| {
                name.parse::<tributary_gateway::JwtAlgorithm>()
                    .map_err(|_| {
                        anyhow::anyhow!("[auth.jwt] algorithms: unknown algorithm {name:?}")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if algorithms.is_empty() {
            bail!("[auth.jwt] algorithms must name at least one algorithm, such as RS256");
        }
        Ok(tributary_gateway::JwtSettings {
            jwks,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms,
            leeway: self.leeway,
            scopes_claim: self.scopes_claim.clone(),
            tenant_claim: self.tenant_claim.clone(),
            min_refresh_interval: self.min_refresh_interval,
        })
    }
}

/// GraphQL at `/graphql` (`tributary_gateway::graphql`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    /// The deepest selection a query may nest; a deeper query is refused whole.
    pub max_depth: usize,
    /// The most a query may cost (each field 1, a list field its page size times its
    /// selection); a costlier query is refused whole.
    pub max_complexity: usize,
    /// Whether the schema may be introspected (GraphiQL needs it).
    pub introspection: bool,
    /// Whether `GET /graphql` serves the GraphiQL page (which loads GraphiQL from a CDN).
    pub graphiql: bool,
    /// How often the status of a pipeline with subscribers is read, to push the results of
    /// its new checkpoints (such as `"250ms"`).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl GraphqlConfig {
    /// The gateway's GraphQL settings.
    #[must_use]
    pub fn settings(&self) -> tributary_gateway::GraphqlSettings {
        tributary_gateway::GraphqlSettings {
            max_depth: self.max_depth,
            max_complexity: self.max_complexity,
            introspection: self.introspection,
            graphiql: self.graphiql,
            poll_interval: self.poll_interval,
        }
    }
}

/// The engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Most records a task handles per poll of the log.
    pub batch_size: usize,
    /// How often the raw-event archive commits its offsets.
    #[serde(with = "humantime_serde")]
    pub archive_checkpoint_interval: Duration,
    /// Whether raw events of every stream are kept in the document store.
    pub archive_raw_events: bool,
    /// How long dead letters are kept (such as `"7d"`): the processor deletes older ones
    /// every 10 minutes. `"0s"` keeps them forever; otherwise at least one minute.
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
}

/// One stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Its name: `a-z`, `0-9`, `_`, `-`, at most 64 characters.
    pub name: String,
    /// Partitions of its log topic: the unit of parallelism.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// What it carries, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The tenant it belongs to, such as `"acme"`: only that tenant's credentials (keys
    /// and JWTs of that tenant) see it, ingest into it, and see its pipelines and dead
    /// letters. Default `"default"`, the tenant of the configured admin keys.
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

fn default_partitions() -> u32 {
    3
}

fn default_tenant() -> String {
    tributary_core::ports::DEFAULT_TENANT.to_owned()
}

/// The longest tenant name, in characters.
const MAX_TENANT_CHARS: usize = 128;

/// Checks a tenant's name: not empty, at most [`MAX_TENANT_CHARS`] characters, without
/// whitespace or control characters.
fn check_tenant(tenant: &str) -> Result<(), String> {
    if tenant.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if tenant.chars().count() > MAX_TENANT_CHARS {
        return Err(format!("must be at most {MAX_TENANT_CHARS} characters"));
    }
    if tenant.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold whitespace or control characters".to_owned());
    }
    Ok(())
}

/// One pipeline: declared field by field, or as one SQL statement (`sql`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Its name (same rules as a stream's); also its consumer group, and its results table
    /// is `results_{name}`.
    pub name: String,
    /// The streams it reads, each declared in `[[streams]]`, such as `["orders"]`. Not with
    /// `sql`, whose `FROM` names the stream.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// The tenant it belongs to: that of its sources, which must all be of one tenant.
    /// Optional: when given, it must be their tenant (a check that the pipeline is where
    /// it is meant to be).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Reference tables its filter, key and aggregates (also those of `sql`) read as
    /// `<lookup>.<field>`, such as `[{ name = "ads", file = "data/ads.csv", key = "ad_id",
    /// on = "payload.ad_id" }]`: an event's row is the one whose `key` column equals `on`
    /// (compared as text); with no such row, its fields are `NULL`. Default: none.
    #[serde(default)]
    pub lookups: Vec<LookupConfig>,
    /// A SQL condition: only the events for which it is true are aggregated, such as
    /// `"payload.status = 'paid' AND payload.amount > 0"`. It reads the event's `id`,
    /// `stream`, `ts` (epoch milliseconds), `key` and `payload.<path>`, and the fields of
    /// its `lookups`. Default: every event.
    #[serde(default)]
    pub filter: Option<String>,
    /// The key: SQL expressions, one result row per window and distinct value of them, such
    /// as `["payload.country"]`. Each is a typed column named after the field it reads
    /// (`payload.country` is `country`); to name a computed key, declare the pipeline with
    /// `sql` and `AS`. Default: the event's key (column `key`); `[]`: one row per window.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// Its windows: `{ type = "tumbling", size = "1m" }`, `{ type = "hopping", size = "5m",
    /// slide = "1m" }` (a window of `size` starting every `slide`) or `{ type = "session",
    /// gap = "30s" }` (a key's activity until `gap` without events). Required unless `sql`
    /// is given.
    #[serde(default)]
    pub window: Option<WindowConfig>,
    /// What it computes per window and key: a table of column name = aggregate call, whose
    /// order is the columns', such as `{ orders = "count(*)", revenue =
    /// "sum(payload.amount)" }`. The calls: `count(*)`, `count(x)`, `count(DISTINCT x)` (as
    /// `count_distinct(x)`), `sum(x)`, `min(x)`, `max(x)`, `avg(x)`, `count_distinct(x)`
    /// (exact up to 64 values, then an estimate with a 1.6% standard error) and
    /// `quantile(x, q)` (within 1%), `x` being a SQL expression. Default: `{ count =
    /// "count(*)" }`.
    #[serde(default)]
    pub aggregates: Option<Aggregates>,
    /// The former way to say what it computes: only `"count"` (`aggregates = { count =
    /// "count(*)" }`), and not together with `aggregates`.
    #[serde(default)]
    pub aggregate: Option<String>,
    /// The pipeline as one SQL statement, instead of `sources`, `filter`, `key`, `window`
    /// and `aggregates`: `SELECT payload.country AS country, count(*) AS orders FROM orders
    /// WHERE payload.amount > 0 GROUP BY payload.country, tumble(ts, INTERVAL '1' MINUTE)`.
    /// `GROUP BY` takes the keys and one window: `tumble(ts, size)`, `hop(ts, slide, size)`
    /// or `session(ts, gap)`, with sizes such as `INTERVAL '5' MINUTE` or `INTERVAL '90
    /// seconds'`; each aggregate is selected `AS` its column. Errors give their line and
    /// column in the statement.
    #[serde(default)]
    pub sql: Option<String>,
    /// How long after a window closed an event may still update its result (a new revision
    /// of its row), such as `"10m"`; later events are dead letters. Default `"0s"`.
    #[serde(with = "humantime_serde", default)]
    pub allowed_lateness: Duration,
    /// How late an event may be, relative to the newest of its partition, and still count.
    #[serde(with = "humantime_serde", default = "default_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// A partition silent for this long does not hold the watermark back (at least `"1s"`).
    #[serde(with = "humantime_serde", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// How often results, state and offsets are committed together.
    #[serde(with = "humantime_serde", default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
    /// When set, such as `"30s"` (at least `"1s"`): once no source delivered an event for
    /// this long (processing time), the watermark moves past every open window, so that the
    /// last windows of a stream that went quiet become final. Default: unset, so they wait
    /// for a newer event.
    #[serde(with = "humantime_serde", default)]
    pub finalize_idle_after: Option<Duration>,
}

/// The shortest dead-letter retention but 0 (forever): one that deletes letters minutes
/// after they are kept is a mistake, not a retention.
const MIN_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(60);

/// A pipeline's reference table (the join of the Yahoo Streaming Benchmark: ad id →
/// campaign id), read whole when the pipeline starts and again every `refresh`. An event is
/// looked up when it is processed: one replayed after a restart sees the table as it is
/// then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// Its name, which expressions read its fields by, as `ads.campaign_id`: letters,
    /// digits and `_`, none of `id`, `stream`, `ts`, `key`, `payload`.
    pub name: String,
    /// A file holding the table (relative to the working directory unless absolute): CSV
    /// (`.csv`: a header line naming the columns, then one row per line; a cell written as
    /// a JSON number, such as `42` or `1.5`, is a number, an empty cell `NULL`, any other
    /// cell text, so `007` stays `"007"`) or NDJSON (`.ndjson`, `.jsonl`: one JSON object
    /// per line). At most 1 GiB and 10 million rows. Either this or `postgres`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A PostgreSQL table (or view) holding the table: `{ url = "postgres://user:password@host/db",
    /// table = "ads" }` (`table` may be `schema.table`; it is quoted, so its case matters),
    /// each row read as `row_to_json` writes it. At most 10 million rows. Either this or
    /// `file`.
    #[serde(default)]
    pub postgres: Option<PostgresLookupConfig>,
    /// The table's column holding the lookup key, such as `"ad_id"`. Of two rows with the
    /// same key, the last one read wins.
    pub key: String,
    /// A SQL expression over the event (not over a lookup) whose value is looked up in
    /// `key`, such as `"payload.ad_id"`: the number `42` and the text `"42"` find the same
    /// row. `NULL` finds none.
    pub on: String,
    /// How often the table is read again, such as `"5m"`: at least `"1s"`, or `"0s"` for
    /// never. A reload that fails keeps the previous table (with a warning); a first load
    /// that fails restarts the pipeline's task, with backoff, until it succeeds. Default
    /// `"1m"`.
    #[serde(with = "humantime_serde", default = "default_lookup_refresh")]
    pub refresh: Duration,
}

/// A lookup's PostgreSQL table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresLookupConfig {
    /// Connection URL, such as `postgres://user:password@host:5432/db`. The role needs only
    /// the right to read the table. Connected at the first load, with a pool of its own of
    /// at most two connections.
    pub url: String,
    /// The table: `name` or `schema.name`, each letters, digits and `_`.
    pub table: String,
}

impl LookupConfig {
    fn definition(&self) -> LookupDefinition {
        LookupDefinition {
            name: self.name.clone(),
            on: self.on.clone(),
            key: self.key.clone(),
            file: self.file.clone(),
            postgres: self.postgres.as_ref().map(|p| PostgresTable {
                url: p.url.clone(),
                table: p.table.clone(),
            }),
            refresh: self.refresh,
        }
    }
}

fn default_lookup_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_out_of_orderness() -> Duration {
    Duration::from_secs(5)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// A pipeline's windows. Sizes are at most 100 years ([`plan::MAX_WINDOW_MS`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum WindowConfig {
    /// Fixed, non-overlapping windows.
    Tumbling {
        /// Window length, such as `"1m"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
    },
    /// Windows of `size` starting every `slide`, so that each event is in `size / slide` of
    /// them.
    Hopping {
        /// Window length, such as `"5m"`.
        #[serde(with = "humantime_serde")]
        size: Duration,
        /// Distance between window starts, such as `"1m"`: more than 0, at most `size`.
        #[serde(with = "humantime_serde")]
        slide: Duration,
    },
    /// One window per key and burst of activity, ending `gap` after its last event.
    Session {
        /// The inactivity that ends a session, such as `"30s"`.
        #[serde(with = "humantime_serde")]
        gap: Duration,
    },
}

impl WindowConfig {
    /// The window in milliseconds (saturating: the plan checks the bounds).
    fn spec(&self) -> WindowSpec {
        match *self {
            Self::Tumbling { size } => WindowSpec::Tumbling {
                size_ms: millis(size),
            },
            Self::Hopping { size, slide } => WindowSpec::Hopping {
                size_ms: millis(size),
                slide_ms: millis(slide),
            },
            Self::Session { gap } => WindowSpec::Session {
                gap_ms: millis(gap),
            },
        }
    }
}

/// A pipeline's aggregates: (column name, call), in the order they are written.
///
/// figment holds tables as sorted maps, so through it they arrive sorted by name;
/// [`Config::load`] then puts them back in the order the TOML text has them (read again
/// with the `toml` crate, whose deserializer follows the document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Aggregates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Aggregates;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of column name = \"aggregate call\"")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Aggregates, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((name, call)) = map.next_entry::<String, String>()? {
                    if entries.iter().any(|(known, _)| *known == name) {
                        return Err(A::Error::custom(format!(
                            "aggregate `{name}` is declared twice"
                        )));
                    }
                    entries.push((name, call));
                }
                Ok(Aggregates(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The parts of a TOML text that give the order of each pipeline's aggregates.
#[derive(Deserialize)]
struct WrittenOrder {
    #[serde(default)]
    pipelines: Vec<WrittenPipeline>,
}

#[derive(Deserialize)]
struct WrittenPipeline {
    name: Option<String>,
    aggregates: Option<Aggregates>,
}

impl PipelineConfig {
    /// The definition to plan, from the fields or from `sql`.
    fn definition(&self) -> anyhow::Result<Definition> {
        let (sources, filter, key, window, aggregates) = match &self.sql {
            Some(sql) => {
                let declared: Vec<&str> = [
                    ("sources", self.sources.is_some()),
                    ("filter", self.filter.is_some()),
                    ("key", self.key.is_some()),
                    ("window", self.window.is_some()),
                    ("aggregates", self.aggregates.is_some()),
                    ("aggregate", self.aggregate.is_some()),
                ]
                .into_iter()
                .filter_map(|(field, given)| given.then_some(field))
                .collect();
                if !declared.is_empty() {
                    bail!(
                        "`sql` declares the sources, filter, key, window and aggregates, so \
                         `{}` cannot be given as well",
                        declared.join("`, `")
                    );
                }
                let query = plan::parse_sql(sql)?;
                (
                    vec![query.source],
                    query.filter,
                    Some(query.keys),
                    query.window,
                    Some(query.aggregates),
                )
            }
            None => {
                let Some(sources) = self.sources.clone() else {
                    bail!(
                        "sources: missing: the streams it reads, such as sources = [\"clicks\"] \
                         (or declare the pipeline with `sql`)"
                    );
                };
                let Some(window) = &self.window else {
                    bail!(
                        "window: missing, such as window = {{ type = \"tumbling\", size = \
                         \"1m\" }} (or declare the pipeline with `sql`)"
                    );
                };
                let aggregates = match (&self.aggregates, self.aggregate.as_deref()) {
                    (Some(_), Some(_)) => bail!(
                        "`aggregate` and `aggregates` cannot both be given; `aggregate = \
                         \"count\"` is `aggregates = {{ count = \"count(*)\" }}`"
                    ),
                    (Some(aggregates), None) => Some(aggregates.0.clone()),
                    (None, None | Some("count")) => None,
                    (None, Some(other)) => bail!(
                        "aggregate: unsupported aggregate {other:?} (only \"count\"; declare \
                         others in `aggregates`, such as aggregates = {{ total = \
                         \"sum(payload.amount)\" }})"
                    ),
                };
                let key = self.key.as_ref().map(|keys| {
                    keys.iter()
                        .map(|k| KeyDefinition::from(k.as_str()))
                        .collect()
                });
                (sources, self.filter.clone(), key, window.spec(), aggregates)
            }
        };
        Ok(Definition {
            name: self.name.clone(),
            sources,
            lookups: self.lookups.iter().map(LookupConfig::definition).collect(),
            filter,
            key,
            window,
            aggregates,
            allowed_lateness: self.allowed_lateness,
            max_out_of_orderness: self.max_out_of_orderness,
            idle_timeout: self.idle_timeout,
            finalize_idle_after: self.finalize_idle_after,
            checkpoint_interval: self.checkpoint_interval,
        })
    }

    /// The checked plan; an error names the field, after `sql` when it is in the
    /// statement (whose position it then gives).
    fn plan(&self) -> anyhow::Result<PipelineSpec> {
        let definition = self.definition()?;
        match plan::plan(&definition) {
            Ok(spec) => Ok(spec),
            Err(e) if self.sql.is_some() && in_statement(&e) => {
                Err(anyhow::Error::new(e).context("sql"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether a plan error is about a part that `sql` declares.
fn in_statement(error: &PlanError) -> bool {
    ["sources", "filter", "key", "window", "aggregates"]
        .iter()
        .any(|part| error.field.starts_with(part))
}

/// `figment`, then the `TRIBUTARY__SECTION__KEY` environment variables.
fn with_env(figment: Figment) -> Figment {
    figment.merge(Env::prefixed("TRIBUTARY__").split("__"))
}

impl Config {
    /// Loads the defaults, then `file` (TOML), then `TRIBUTARY__*` environment variables.
    ///
    /// # Errors
    /// When the file cannot be read, or a value is missing, mistyped or unknown.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_figment(Figment::from(Toml::string(DEFAULTS)), &[], file)
    }

    /// Like [`Config::load`], with `base` (TOML text) between the defaults and the file.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with_base(base: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_figment(
            Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(base)),
            &[base],
            file,
        )
    }

    /// The demo's configuration: `config/demo.toml` (compiled in), with its data under
    /// `data_dir` and its HTTP server on `listen` when given, else on
    /// `TRIBUTARY__HTTP__LISTEN` when set, else on the demo's `127.0.0.1:8080`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn demo(data_dir: &Path, listen: Option<SocketAddr>) -> anyhow::Result<Self> {
        let db = data_dir.join("tributary.db");
        let figment = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string(DEMO))
            .merge(("log.path", data_dir.join("log.redb")))
            .merge(("analytics.path", &db))
            .merge(("documents.path", &db));
        let mut config = Self::from_figment(figment, &[DEMO], None)?;
        if let Some(listen) = listen {
            config.http.listen = listen;
        }
        Ok(config)
    }

    /// Extracts the configuration from `figment`, merged with `file`; `texts` are the TOML
    /// texts already in `figment` that may declare pipelines.
    fn from_figment(
        mut figment: Figment,
        texts: &[&str],
        file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut texts: Vec<String> = texts.iter().map(|&text| text.to_owned()).collect();
        if let Some(path) = file {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
            // figment reads it too, and reports what cannot be read.
            texts.extend(std::fs::read_to_string(path).ok());
        }
        let mut config: Self = with_env(figment)
            .extract()
            .context("invalid configuration")?;
        config.restore_aggregate_order(&texts);
        Ok(config)
    }

    /// Puts each pipeline's aggregates back in the order its TOML text writes them (the
    /// last text declaring the pipeline wins, as in the merge), which figment does not keep.
    fn restore_aggregate_order(&mut self, texts: &[String]) {
        let mut written: HashMap<String, Vec<String>> = HashMap::new();
        for text in texts {
            let Ok(order) = toml::from_str::<WrittenOrder>(text) else {
                continue;
            };
            for pipeline in order.pipelines {
                if let (Some(name), Some(aggregates)) = (pipeline.name, pipeline.aggregates) {
                    written.insert(name, aggregates.0.into_iter().map(|(n, _)| n).collect());
                }
            }
        }
        for pipeline in &mut self.pipelines {
            let (Some(aggregates), Some(order)) =
                (&mut pipeline.aggregates, written.get(&pipeline.name))
            else {
                continue;
            };
            let position = |name: &str| order.iter().position(|n| n == name);
            if aggregates
                .0
                .iter()
                .all(|(name, _)| position(name).is_some())
            {
                aggregates.0.sort_by_key(|(name, _)| position(name));
            }
        }
    }

    /// Checks names and references and builds the pipeline plans.
    ///
    /// # Errors
    /// On a bad or duplicate name, a pipeline reading an undeclared stream, a pipeline that
    /// does not plan (prefixed `pipeline {name}: ` and naming the field, with the position
    /// of a mistake in an expression or statement), a zero size or limit, or a
    /// dead-letter retention under a minute (but 0).
    pub fn validate(&self) -> anyhow::Result<Checked> {
        if self.auth.anonymous_scopes.contains(&Scope::Admin) {
            bail!(
                "[auth] anonymous_scopes cannot hold \"admin\": anonymous requests never administer"
            );
        }
        if self.http.max_body_bytes == 0 {
            bail!("[http] max_body_bytes must be at least 1");
        }
        if self.http.header_timeout.is_zero() {
            bail!("[http] header_timeout must be longer than 0s");
        }
        if let Err(reason) = self.http.edge().check(self.http.max_body_bytes) {
            bail!("[http] {reason}");
        }
        if let Err(reason) = self.graphql.settings().check() {
            bail!("[graphql] {reason}");
        }
        if self.rate_limit.enabled {
            self.rate_limit.settings()?;
            self.rate_limit.redis(&self.cache)?;
        }
        if self.engine.batch_size == 0 {
            bail!("[engine] batch_size must be at least 1");
        }
        self.tracing.check()?;
        let dead_letter_retention = match self.engine.dead_letter_retention {
            Duration::ZERO => None,
            short if short < MIN_DEAD_LETTER_RETENTION => bail!(
                "[engine] dead_letter_retention must be \"0s\" (keep forever) or at least 1m, not {short:?}"
            ),
            retention => Some(retention),
        };
        let mut streams = Vec::new();
        let mut names = BTreeSet::new();
        for stream in &self.streams {
            let name = StreamName::new(stream.name.clone()).context("in [[streams]]")?;
            if !names.insert(name.clone()) {
                bail!("stream {name} is declared twice");
            }
            if stream.partitions == 0 {
                bail!("stream {name} needs at least one partition");
            }
            if let Err(reason) = check_tenant(&stream.tenant) {
                bail!("stream {name}: tenant {:?} {reason}", stream.tenant);
            }
            streams.push(name);
        }
        let mut pipelines = Vec::new();
        let mut pipeline_names = BTreeSet::new();
        let mut tables = std::collections::BTreeMap::new();
        for p in &self.pipelines {
            if !pipeline_names.insert(p.name.clone()) {
                bail!("pipeline {} is declared twice", p.name);
            }
            // `a-b` and `a_b` would share a results table.
            let table = tributary_core::results::results_table(&p.name);
            if let Some(other) = tables.insert(table.clone(), p.name.clone()) {
                bail!(
                    "pipelines {other} and {} would share the results table {table}: rename one",
                    p.name
                );
            }
            let spec = p.plan().with_context(|| format!("pipeline {}", p.name))?;
            if let Some(stream) = spec.sources.iter().find(|s| !names.contains(*s)) {
                bail!(
                    "pipeline {}: reads stream {stream}, which is not declared in [[streams]]",
                    p.name
                );
            }
            self.check_pipeline_tenant(p, &spec)?;
            pipelines.push(spec);
        }
        Ok(Checked {
            streams,
            pipelines,
            dead_letter_retention,
        })
    }
}

impl Config {
    /// Checks that the sources of `p` (planned as `spec`) are all of one tenant, and that
    /// it is the pipeline's declared tenant, if any.
    fn check_pipeline_tenant(&self, p: &PipelineConfig, spec: &PipelineSpec) -> anyhow::Result<()> {
        let tenant_of = |source: &StreamName| {
            self.streams
                .iter()
                .find(|s| s.name == source.as_str())
                .map_or(tributary_core::ports::DEFAULT_TENANT, |s| s.tenant.as_str())
        };
        let mut sources = spec.sources.iter().map(|s| (s, tenant_of(s)));
        let Some((first, tenant)) = sources.next() else {
            return Ok(());
        };
        if let Some((other, its)) = sources.find(|(_, t)| t != &tenant) {
            bail!(
                "pipeline {}: its sources are of different tenants ({first} of {tenant:?}, {other} of {its:?}); a pipeline reads streams of one tenant",
                p.name
            );
        }
        if let Some(declared) = p.tenant.as_deref().filter(|d| *d != tenant) {
            bail!(
                "pipeline {}: tenant {declared:?} is not the tenant of its sources ({first} is of {tenant:?})",
                p.name
            );
        }
        Ok(())
    }
}

/// What [`Config::validate`] produces.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The declared streams, in order.
    pub streams: Vec<StreamName>,
    /// The pipeline plans.
    pub pipelines: Vec<PipelineSpec>,
    /// How long dead letters are kept; `None`: forever.
    pub dead_letter_retention: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use tributary_core::lookup::{FileFormat, LookupSource};

    use super::*;

    const EMBEDDED: &str = r#"
        [log]
        type = "embedded"
        path = "/tmp/x/log.redb"
        [analytics]
        type = "sqlite"
        path = "/tmp/x/tributary.db"
        [documents]
        type = "sqlite"
        path = "/tmp/x/tributary.db"
        [cache]
        type = "memory"
        [[streams]]
        name = "clicks"
        [[pipelines]]
        name = "clicks_per_page"
        sources = ["clicks"]
        window = { type = "tumbling", size = "1m" }
    "#;

    #[test]
    fn the_shipped_configs_are_valid() {
        for file in ["../../config/local.toml", "../../config/demo.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let config = Config::load(Some(&path)).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        }
    }

    #[test]
    fn tracing_defaults_are_the_built_in_ones() {
        let config = Config::load_with_base(EMBEDDED, None).unwrap();
        assert_eq!(config.tracing, TracingConfig::default());
    }

    #[test]
    fn tracing_is_read_from_a_file_that_does_not_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tributary.toml");
        let tracing =
            "[tracing]\notlp_endpoint = \"http://collector:4318\"\nsampling_ratio = 0.5\n";
        std::fs::write(&path, format!("{tracing}[nonsense]\nkey = 1\n")).unwrap();
        assert!(Config::load(Some(&path)).is_err());
        let read = TracingConfig::of_file(&path);
        assert_eq!(read.otlp_endpoint.as_deref(), Some("http://collector:4318"));
        assert!((read.sampling_ratio - 0.5).abs() < f64::EPSILON);
        std::fs::write(&path, "[tracing]\nsampling_ratio = \"all\"\n").unwrap();
        assert_eq!(TracingConfig::of_file(&path), TracingConfig::default());
    }

    #[test]
    fn tracing_settings_are_checked() {
        for (section, error) in [
            (
                "sampling_ratio = 1.5",
                "sampling_ratio must be between 0.0 and 1.0",
            ),
            ("service_name = \"\"", "service_name must not be empty"),
            (
                "otlp_endpoint = \"collector:4318\"",
                "must be an http:// or https:// URL",
            ),
        ] {
            let config = format!("{EMBEDDED}\n[tracing]\n{section}\n");
            let err = plans(&config).unwrap_err();
            assert!(err.contains(error), "{section}: {err}");
        }
        let config = format!("{EMBEDDED}\n[tracing]\notlp_endpoint = \"http://collector:4318\"\n");
        assert!(plans(&config).is_ok());
    }

    /// `EMBEDDED` with an `orders` stream and `pipeline` (TOML) instead of its pipeline.
    fn with_pipeline(pipeline: &str) -> String {
        let (head, _) = EMBEDDED.split_once("[[pipelines]]").unwrap();
        format!("{head}[[streams]]\nname = \"orders\"\n[[pipelines]]\n{pipeline}\n")
    }

    /// The plans of a config, or its error with its causes.
    fn plans(config: &str) -> Result<Vec<PipelineSpec>, String> {
        Config::load_with_base(config, None)
            .and_then(|config| config.validate())
            .map(|checked| checked.pipelines)
            .map_err(|e| format!("{e:#}"))
    }

    const REVENUE_BY_COUNTRY: &str = r#"
        name = "revenue_by_country"
        sources = ["orders"]
        filter = "payload.status = 'paid' AND payload.amount > 0"
        key = ["payload.country"]
        window = { type = "hopping", size = "5m", slide = "1m" }
        aggregates = { orders = "count(*)", revenue = "sum(payload.amount)", avg_amount = "avg(payload.amount)", buyers = "count_distinct(payload.customer)", p95_amount = "quantile(payload.amount, 0.95)" }
        allowed_lateness = "10m"
    "#;

    const REVENUE_BY_COUNTRY_SQL: &str = r#"
        name = "revenue_by_country"
        sql = "SELECT payload.country AS country, count(*) AS orders, sum(payload.amount) AS revenue, avg(payload.amount) AS avg_amount, count_distinct(payload.customer) AS buyers, quantile(payload.amount, 0.95) AS p95_amount FROM orders WHERE payload.status = 'paid' AND payload.amount > 0 GROUP BY payload.country, hop(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)"
        allowed_lateness = "10m"
    "#;

    #[test]
    fn pipelines_sharing_a_results_table_are_refused() {
        let (head, _) = EMBEDDED.split_once("[[pipelines]]").unwrap();
        let config = format!(
            "{head}[[streams]]\nname = \"s\"\n\
             [[pipelines]]\nname = \"a-b\"\nsources = [\"s\"]\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
             [[pipelines]]\nname = \"a_b\"\nsources = [\"s\"]\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n"
        );
        let err = plans(&config).unwrap_err();
        assert!(err.contains("share the results table"), "{err}");
    }

    #[test]
    fn a_pipeline_is_planned() {
        let checked = Config::load_with_base(EMBEDDED, None)
            .unwrap()
            .validate()
            .unwrap();
        let spec = &checked.pipelines[0];
        assert_eq!(spec.window, WindowSpec::Tumbling { size_ms: 60_000 });
        assert_eq!(spec.max_out_of_orderness, Duration::from_secs(5));
        assert_eq!(spec.allowed_lateness, Duration::ZERO);
        assert_eq!(spec.finalize_idle_after, None);
    }

    #[test]
    fn a_pipeline_written_as_before_plans_to_the_counting_plan() {
        let spec = &plans(EMBEDDED).unwrap()[0];
        let counting = PipelineSpec::counting(
            "clicks_per_page",
            vec![StreamName::new("clicks").unwrap()],
            WindowSpec::Tumbling { size_ms: 60_000 },
        );
        assert_eq!(spec.fingerprint(), counting.fingerprint());
        assert_eq!(spec.definition(), counting.definition());
        assert_eq!(spec.schema(), counting.schema());
        assert!(spec.is_legacy_count());
        assert_eq!(
            (
                spec.allowed_lateness,
                spec.max_out_of_orderness,
                spec.idle_timeout
            ),
            (
                counting.allowed_lateness,
                counting.max_out_of_orderness,
                counting.idle_timeout
            )
        );
        assert_eq!(spec.checkpoint_interval, counting.checkpoint_interval);
        // `aggregate = "count"`, as configs said it, is the same plan.
        let explicit = EMBEDDED.replace(
            "size = \"1m\" }",
            "size = \"1m\" }\n        aggregate = \"count\"",
        );
        assert_eq!(
            plans(&explicit).unwrap()[0].fingerprint(),
            counting.fingerprint()
        );
    }

    #[test]
    fn the_issues_example_plans_with_its_aggregates_in_order() {
        let spec = &plans(&with_pipeline(REVENUE_BY_COUNTRY)).unwrap()[0];
        assert_eq!(spec.name, "revenue_by_country");
        assert_eq!(spec.sources, [StreamName::new("orders").unwrap()]);
        assert_eq!(
            spec.window,
            WindowSpec::Hopping {
                size_ms: 300_000,
                slide_ms: 60_000
            }
        );
        assert_eq!(spec.keys.len(), 1);
        assert_eq!(spec.keys[0].name, "country");
        assert!(spec.filter.is_some());
        let columns: Vec<&str> = spec.aggregates.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            columns,
            ["orders", "revenue", "avg_amount", "buyers", "p95_amount"]
        );
        assert_eq!(spec.allowed_lateness, Duration::from_secs(600));
        // The same order when the aggregates are a table of their own.
        let table = with_pipeline(
            r#"
            name = "revenue_by_country"
            sources = ["orders"]
            window = { type = "tumbling", size = "1m" }
            [pipelines.aggregates]
            zeta = "count(*)"
            alpha = "sum(payload.amount)"
            "#,
        );
        let spec = &plans(&table).unwrap()[0];
        let columns: Vec<&str> = spec.aggregates.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(columns, ["zeta", "alpha"]);
    }

    #[test]
    fn the_sql_form_plans_to_the_same_fingerprint() {
        let toml = &plans(&with_pipeline(REVENUE_BY_COUNTRY)).unwrap()[0];
        let sql = &plans(&with_pipeline(REVENUE_BY_COUNTRY_SQL)).unwrap()[0];
        assert_eq!(sql.definition(), toml.definition());
        assert_eq!(sql.fingerprint(), toml.fingerprint());
        assert_eq!(sql.schema(), toml.schema());
        assert_eq!(sql.allowed_lateness, toml.allowed_lateness);
    }

    #[test]
    fn bad_pipelines_are_refused_naming_the_field_and_the_position() {
        let revenue = |from: &str, to: &str| {
            assert!(REVENUE_BY_COUNTRY.contains(from), "{from}");
            plans(&with_pipeline(&REVENUE_BY_COUNTRY.replace(from, to))).unwrap_err()
        };
        let sql = |from: &str, to: &str| {
            assert!(REVENUE_BY_COUNTRY_SQL.contains(from), "{from}");
            plans(&with_pipeline(&REVENUE_BY_COUNTRY_SQL.replace(from, to))).unwrap_err()
        };
        for (err, expected) in [
            (
                revenue("payload.status = 'paid'", "status = 'paid'"),
                "pipeline revenue_by_country: filter: unknown field `status`",
            ),
            (
                revenue("sum(payload.amount)", "sum(payload.amount + 'x')"),
                "pipeline revenue_by_country: aggregates.revenue: type error",
            ),
            (
                revenue("sum(payload.amount)", "total(payload.amount)"),
                "pipeline revenue_by_country: aggregates.revenue: unknown aggregate function \
                 `total` (known: count, sum, min, max, avg, count_distinct, quantile) (at line 1, \
                 column 1)",
            ),
            (
                revenue("0.95)", "1.5)"),
                "pipeline revenue_by_country: aggregates.p95_amount: quantile's q must be \
                 between 0 and 1, not 1.5 (at line 1, column 1)",
            ),
            (
                revenue("slide = \"1m\"", "slide = \"10m\""),
                "pipeline revenue_by_country: window.slide: the slide must be more than 0 and \
                 at most the size (5m), not 10m",
            ),
            (
                revenue(
                    "key = [\"payload.country\"]",
                    "key = [\"payload.country\", 1]",
                ),
                "invalid configuration",
            ),
            (
                revenue(
                    "key = [\"payload.country\"]",
                    "key = [\"upper(payload.country)\"]",
                ),
                "pipeline revenue_by_country: key[0]: `upper(payload.country)` needs a column \
                 name",
            ),
            (
                revenue(
                    "allowed_lateness",
                    "aggregate = \"count\"\n        allowed_lateness",
                ),
                "pipeline revenue_by_country: `aggregate` and `aggregates` cannot both be given",
            ),
            (
                revenue(
                    "window = { type = \"hopping\", size = \"5m\", slide = \"1m\" }",
                    "",
                ),
                "pipeline revenue_by_country: window: missing",
            ),
            (
                revenue(
                    "allowed_lateness",
                    "finalize_idle_after = \"500ms\"\n        allowed_lateness",
                ),
                "pipeline revenue_by_country: finalize_idle_after: must be at least 1s, not 500ms",
            ),
            (
                sql(
                    "allowed_lateness",
                    "window = { type = \"tumbling\", size = \"1m\" }\n        allowed_lateness",
                ),
                "pipeline revenue_by_country: `sql` declares the sources, filter, key, window and \
                 aggregates, so `window` cannot be given as well",
            ),
            (
                sql("'paid' AND", "'paid' + 1 AND"),
                "pipeline revenue_by_country: sql: filter: type error",
            ),
            (
                sql("WHERE payload.status", "WHERE status"),
                "pipeline revenue_by_country: sql: filter: unknown field `status`",
            ),
            (
                sql("0.95)", "1.5)"),
                "pipeline revenue_by_country: sql: aggregates.p95_amount: quantile's q must be \
                 between 0 and 1, not 1.5 (at line 1, column 167)",
            ),
            (
                sql(
                    "INTERVAL '1' MINUTE, INTERVAL '5' MINUTE",
                    "INTERVAL '10' MINUTE, INTERVAL '5' MINUTE",
                ),
                "pipeline revenue_by_country: sql: the slide must be more than 0 and at most the \
                 size (5m), not 10m (at line 1, column 303)",
            ),
            (
                sql("FROM orders", "FROM views"),
                "pipeline revenue_by_country: reads stream views, which is not declared",
            ),
            (
                sql(" GROUP BY", " ORDER BY payload.country GROUP BY"),
                "pipeline revenue_by_country: sql: ORDER BY is not supported",
            ),
        ] {
            assert!(err.starts_with(expected), "expected {expected}\n got {err}");
        }
        // Positions in a filter point into it.
        let err = revenue(
            "payload.status = 'paid'",
            "payload.status = 'paid' AND nope",
        );
        assert!(err.ends_with("(at line 1, column 29)"), "{err}");
    }

    #[test]
    fn typos_and_bad_references_are_refused() {
        let typo = EMBEDDED.replace(
            "[cache]\n        type = \"memory\"",
            "[cache]\n        type = \"memory\"\n        max_entires = 3",
        );
        assert!(Config::load_with_base(&typo, None).is_err());
        let typo = EMBEDDED.replace("size = \"1m\" }", "size = \"1m\" }\n        agregates = {}");
        let err = Config::load_with_base(&typo, None).unwrap_err();
        assert!(format!("{err:#}").contains("agregates"), "{err:#}");
        let unknown_source = EMBEDDED.replace("sources = [\"clicks\"]", "sources = [\"views\"]");
        let err = Config::load_with_base(&unknown_source, None)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("not declared"), "{err}");
    }

    const VIEWS_PER_CAMPAIGN: &str = r#"
        name = "views_per_campaign"
        sources = ["orders"]
        lookups = [
          { name = "ads", file = "data/ads.csv", key = "ad_id", on = "payload.ad_id", refresh = "5m" },
          { name = "owners", postgres = { url = "postgres://u:p@db/x", table = "crm.owners" }, key = "id", on = "payload.owner" },
        ]
        filter = "payload.event_type = 'view' AND ads.campaign_id IS NOT NULL"
        key = ["ads.campaign_id"]
        window = { type = "tumbling", size = "10s" }
        aggregates = { views = "count(*)", owners = "count_distinct(owners.name)" }
    "#;

    #[test]
    fn pipelines_with_lookups_are_planned() {
        let spec = &plans(&with_pipeline(VIEWS_PER_CAMPAIGN)).unwrap()[0];
        let lookups: Vec<(&str, &str, &str, Duration)> = spec
            .lookups
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.on.canonical(),
                    l.key_column.as_str(),
                    l.refresh,
                )
            })
            .collect();
        assert_eq!(
            lookups,
            [
                ("ads", "payload.ad_id", "ad_id", Duration::from_secs(300)),
                ("owners", "payload.owner", "id", Duration::from_secs(60)),
            ]
        );
        assert_eq!(
            spec.lookups[0].source,
            LookupSource::File {
                path: "data/ads.csv".into(),
                format: FileFormat::Csv
            }
        );
        assert_eq!(
            spec.lookups[1].source,
            LookupSource::Postgres {
                url: "postgres://u:p@db/x".to_owned(),
                table: "crm.owners".to_owned()
            }
        );
        assert_eq!(spec.keys[0].name, "campaign_id");
        // Beside `sql` too, as the same plan.
        let sql = with_pipeline(
            r#"
            name = "views_per_campaign"
            sql = "SELECT ads.campaign_id AS campaign_id, count(*) AS views, count_distinct(owners.name) AS owners FROM orders WHERE payload.event_type = 'view' AND ads.campaign_id IS NOT NULL GROUP BY ads.campaign_id, tumble(ts, INTERVAL '10' SECOND)"
            lookups = [
              { name = "ads", file = "elsewhere/ads.ndjson", key = "ad_id", on = "payload.ad_id" },
              { name = "owners", postgres = { url = "postgres://u:p@db/x", table = "owners" }, key = "id", on = "payload.owner", refresh = "0s" },
            ]
            "#,
        );
        let sql = &plans(&sql).unwrap()[0];
        assert_eq!(
            sql.fingerprint(),
            spec.fingerprint(),
            "the tables' places are not part of it"
        );
        assert_eq!(sql.lookups[1].refresh, Duration::ZERO);
    }

    #[test]
    fn bad_lookups_are_refused() {
        let views = |from: &str, to: &str| {
            assert!(VIEWS_PER_CAMPAIGN.contains(from), "{from}");
            plans(&with_pipeline(&VIEWS_PER_CAMPAIGN.replace(from, to))).unwrap_err()
        };
        for (err, expected) in [
            (
                views("data/ads.csv", "data/ads.json"),
                "pipeline views_per_campaign: lookups.ads.file: `data/ads.json`: a lookup file is \
                 CSV (`.csv`) or NDJSON (`.ndjson`, `.jsonl`), as its extension says",
            ),
            (
                views("key = \"ad_id\", ", ""),
                "invalid configuration: missing field `key` for key \"default.pipelines.0.lookups.0\"",
            ),
            (
                views("refresh = \"5m\"", "refresh = \"10ms\""),
                "pipeline views_per_campaign: lookups.ads.refresh: must be \"0s\" (never) or at \
                 least 1s, not 10ms",
            ),
            (
                views("table = \"crm.owners\"", "table = \"crm.owners; --\""),
                "pipeline views_per_campaign: lookups.owners.postgres.table: table `crm.owners; \
                 --` must be",
            ),
            (
                views("name = \"owners\"", "name = \"ads\""),
                "pipeline views_per_campaign: lookups[1].name: lookup `ads` is declared twice",
            ),
            (
                views("on = \"payload.owner\"", "on = \"ads.owner\""),
                "pipeline views_per_campaign: lookups.owners.on: `on` reads the event",
            ),
            (
                views(
                    "key = [\"ads.campaign_id\"]",
                    "key = [\"adds.campaign_id\"]",
                ),
                "pipeline views_per_campaign: key[0]: unknown field `adds` (fields are id, \
                 stream, ts, key, payload.*, ads.*, owners.*) (at line 1, column 1)",
            ),
            (
                views("file = \"data/ads.csv\", ", ""),
                "pipeline views_per_campaign: lookups.ads: missing its table",
            ),
            (
                views("file = \"data/ads.csv\"", "fil = \"data/ads.csv\""),
                "invalid configuration: unknown field: found `fil`",
            ),
        ] {
            assert!(err.starts_with(expected), "expected {expected}\n got {err}");
        }
    }

    #[test]
    fn graphql_has_defaults_and_checked_limits() {
        let config = Config::load_with_base(EMBEDDED, None).unwrap();
        assert_eq!(
            config.graphql.settings(),
            tributary_gateway::GraphqlSettings::default()
        );
        for (setting, expected) in [
            ("max_depth = 0", "[graphql] max_depth must be at least 1"),
            (
                "max_complexity = 0",
                "[graphql] max_complexity must be at least 1",
            ),
            (
                "poll_interval = \"0s\"",
                "[graphql] poll_interval must be longer than 0s",
            ),
        ] {
            // A section of its own, before the streams (tables before arrays of tables).
            let section = format!("[graphql]\n{setting}\n[[streams]]");
            let text = EMBEDDED.replacen("[[streams]]", &section, 1);
            let err = Config::load_with_base(&text, None)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(format!("{err:#}"), expected);
        }
    }

    #[test]
    fn window_sizes_are_bounded() {
        for size in ["0s", "101y"] {
            let config = EMBEDDED.replace("size = \"1m\"", &format!("size = \"{size}\""));
            let err = Config::load_with_base(&config, None)
                .unwrap()
                .validate()
                .unwrap_err();
            let err = format!("{err:#}");
            assert!(
                err.starts_with("pipeline clicks_per_page: window.size: the window size must be"),
                "{size}: {err}"
            );
        }
    }

    #[test]
    fn idle_timeouts_are_at_least_a_second() {
        let idle = |value: &str| {
            let config = EMBEDDED.replace(
                "size = \"1m\" }",
                &format!("size = \"1m\" }}\n        idle_timeout = \"{value}\""),
            );
            Config::load_with_base(&config, None).unwrap().validate()
        };
        assert_eq!(
            idle("1s").unwrap().pipelines[0].idle_timeout,
            Duration::from_secs(1)
        );
        for short in ["0s", "999ms"] {
            let err = format!("{:#}", idle(short).unwrap_err());
            assert!(
                err.starts_with("pipeline clicks_per_page: idle_timeout: must be at least 1s"),
                "{short}: {err}"
            );
        }
    }

    #[test]
    fn dead_letter_retention_is_forever_or_at_least_a_minute() {
        let retention = |value: &str| {
            Config::load_with_base(
                &format!("{EMBEDDED}\n[engine]\ndead_letter_retention = \"{value}\"\n"),
                None,
            )
            .unwrap()
            .validate()
            .map(|checked| checked.dead_letter_retention)
        };
        let default = Config::load_with_base(EMBEDDED, None)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            default.dead_letter_retention,
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(retention("0s").unwrap(), None);
        assert_eq!(retention("1m").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(
            retention("30days").unwrap(),
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        for short in ["1ms", "59s"] {
            let err = retention(short).unwrap_err();
            assert!(
                err.to_string().contains("dead_letter_retention") && err.to_string().contains("1m"),
                "{short}: {err}"
            );
        }
    }

    #[test]
    fn event_times_may_be_an_hour_ahead_unless_configured() {
        let max_ts_ahead = |extra: &str| {
            Config::load_with_base(&format!("{EMBEDDED}\n{extra}"), None)
                .unwrap()
                .http
                .max_ts_ahead
        };
        assert_eq!(max_ts_ahead(""), Duration::from_secs(3600));
        assert_eq!(
            max_ts_ahead("[http]\nmax_ts_ahead = \"5m\"\n"),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn auth_defaults_and_jwt_settings_are_checked() {
        let auth = Config::load_with_base(EMBEDDED, None).unwrap().auth;
        assert_eq!(auth.key_cache_ttl, Duration::from_secs(5));
        assert!(auth.jwt.is_none());
        let jwt = |extra: &str| {
            let text = format!(
                "{EMBEDDED}\n[auth.jwt]\nissuer = \"https://i\"\naudience = \"t\"\n{extra}"
            );
            Config::load_with_base(&text, None).map(|c| c.auth.jwt.unwrap())
        };
        let settings = jwt("jwks_url = \"https://i/jwks\"")
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(
            settings.algorithms,
            [tributary_gateway::JwtAlgorithm::RS256]
        );
        assert_eq!(settings.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(settings.scopes_claim, "scope");
        for (extra, error) in [
            ("", "exactly one of jwks_file and jwks_url"),
            (
                "jwks_file = \"a.json\"\njwks_url = \"https://i/jwks\"",
                "exactly one",
            ),
            ("jwks_url = \"ftp://i/jwks\"", "http(s) URL"),
            (
                "jwks_file = \"a.json\"\nalgorithms = [\"none\"]",
                "unknown algorithm \"none\"",
            ),
            ("jwks_file = \"a.json\"\nalgorithms = []", "at least one"),
        ] {
            let message = format!("{:#}", jwt(extra).unwrap().settings().unwrap_err());
            assert!(message.contains(error), "{extra}: {message}");
        }
        assert!(jwt("jwks_file = \"a.json\"\naudiences = [\"x\"]").is_err());
    }

    #[test]
    fn nodes_drain_behind_a_load_balancer_but_the_demo_stops_at_once() {
        let http = Config::load_with_base(EMBEDDED, None).unwrap().http;
        assert_eq!(http.drain_delay, Duration::from_secs(5));
        assert_eq!(http.drain_timeout, Duration::from_secs(10));
        let demo = Config::demo(Path::new("data/demo"), Some("127.0.0.1:0".parse().unwrap()))
            .unwrap()
            .http;
        assert_eq!(demo.drain_delay, Duration::ZERO);
        assert_eq!(demo.drain_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_edge_has_bounded_defaults_and_reads_its_settings() {
        let http = Config::load_with_base(EMBEDDED, None).unwrap().http;
        assert_eq!(http.header_timeout, Duration::from_secs(10));
        assert_eq!(http.body_timeout, Duration::from_secs(30));
        assert_eq!(http.max_events_per_request, 10_000);
        assert_eq!(http.max_bytes_in_flight, 64 * 1024 * 1024);
        assert_eq!(http.max_page_bytes, 4 * 1024 * 1024);
        assert!(http.cors_allowed_origins.is_empty());
        assert_eq!(http.edge(), tributary_gateway::EdgeSettings::default());
        let set = Config::load_with_base(
            &format!(
                "{EMBEDDED}\n[http]\ncors_allowed_origins = [\"https://app.example.com\"]\n\
                 max_events_per_request = 5\nbody_timeout = \"2s\"\n"
            ),
            None,
        )
        .unwrap();
        set.validate().unwrap();
        let edge = set.http.edge();
        assert_eq!(edge.cors_allowed_origins, ["https://app.example.com"]);
        assert_eq!(edge.max_events_per_request, 5);
        assert_eq!(edge.body_timeout, Duration::from_secs(2));
    }

    #[test]
    fn rate_limits_are_on_by_default_and_checked() {
        let config = Config::load_with_base(EMBEDDED, None).unwrap();
        assert!(config.rate_limit.enabled);
        let settings = config.rate_limit.settings().unwrap();
        assert_eq!(settings.read.burst(), 10_000);
        assert_eq!(settings.address.rate(), 10_000);
        assert_eq!(
            config.rate_limit.redis(&config.cache).unwrap(),
            None,
            "auto: memory cache"
        );
        for (extra, expected) in [
            ("backend = \"redis\"", "needs [cache] type = \"redis\""),
            (
                "read = { rate = 0, period = \"1s\", burst = 1 }",
                "[rate_limit] read",
            ),
            ("backend = \"disk\"", "unknown variant"),
            ("local_share_percent = 0", "between 1 and 100"),
            ("sync_interval = \"soon\"", "sync_interval"),
            (
                "admin = { rate = 1, period = \"1s\", burst = 1, brust = 2 }",
                "brust",
            ),
        ] {
            let error =
                Config::load_with_base(&format!("{EMBEDDED}\n[rate_limit]\n{extra}\n"), None)
                    .and_then(|config| config.validate().map(|_| ()));
            let message = format!("{:#}", error.unwrap_err());
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn zero_sizes_are_refused() {
        for (setting, name) in [
            ("[http]\nmax_body_bytes = 0\n", "max_body_bytes"),
            (
                "[http]\nmax_events_per_request = 0\n",
                "max_events_per_request",
            ),
            ("[http]\nmax_page_bytes = 0\n", "max_page_bytes"),
            ("[http]\nheader_timeout = \"0s\"\n", "header_timeout"),
            ("[http]\nbody_timeout = \"0s\"\n", "body_timeout"),
            (
                "[http]\nmax_bytes_in_flight = 1048576\n",
                "max_bytes_in_flight",
            ),
            (
                "[http]\ncors_allowed_origins = [\"https://a.example/x\"]\n",
                "cors_allowed_origins",
            ),
            ("[engine]\nbatch_size = 0\n", "batch_size"),
            (
                "[auth]\nanonymous_scopes = [\"read\", \"admin\"]\n",
                "anonymous_scopes",
            ),
        ] {
            let err = Config::load_with_base(&format!("{EMBEDDED}\n{setting}"), None)
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn streams_have_a_tenant_and_pipelines_read_streams_of_one() {
        let (head, _) = EMBEDDED.split_once("[[pipelines]]").unwrap();
        let config = |streams: &str, pipeline: &str| {
            format!(
                "{head}{streams}\n[[pipelines]]\nname = \"p\"\n{pipeline}\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n"
            )
        };
        let two = "[[streams]]\nname = \"a\"\ntenant = \"acme\"\n[[streams]]\nname = \"b\"\n";
        let loaded = Config::load_with_base(&config(two, "sources = [\"a\"]"), None).unwrap();
        let tenants: Vec<&str> = loaded.streams.iter().map(|s| s.tenant.as_str()).collect();
        // The stream of EMBEDDED, then `a` and `b`.
        assert_eq!(tenants, ["default", "acme", "default"]);
        assert!(plans(&config(two, "sources = [\"a\"]\ntenant = \"acme\"")).is_ok());
        let err = plans(&config(two, "sources = [\"a\", \"b\"]")).unwrap_err();
        assert!(
            err.contains("pipeline p: its sources are of different tenants"),
            "{err}"
        );
        let err = plans(&config(two, "sources = [\"b\"]\ntenant = \"acme\"")).unwrap_err();
        assert!(
            err.contains("tenant \"acme\" is not the tenant of its sources"),
            "{err}"
        );
        let blank = "[[streams]]\nname = \"a\"\ntenant = \"\"\n";
        let err = plans(&config(blank, "sources = [\"a\"]")).unwrap_err();
        assert!(
            err.contains("stream a: tenant \"\" must not be empty"),
            "{err}"
        );
        let spaced = "[[streams]]\nname = \"a\"\ntenant = \"a b\"\n";
        assert!(plans(&config(spaced, "sources = [\"a\"]")).is_err());
    }
}
