//! `tributary demo`: the whole system in one process, embedded, with generators playing
//! three sources — web clicks, orders and sensor readings — through the HTTP API, with the
//! out-of-order timestamps, client retries (duplicate ids) and occasional late events of
//! real sources.
//!
//! Before the node starts, the file source reads a sample export of sensor readings
//! ([`SAMPLE_FILE`], written anew in the data directory at each start: [`SAMPLE_EVENTS`]
//! lines, [`SAMPLE_BAD_LINES`] of them invalid) into the `sensors` stream, through the same
//! code as `tributary ingest` ([`crate::ingest::run_with`]), and prints its summary: the
//! invalid lines are dead letters (`origin.kind = "file"`). The Kafka and MQTT sources need
//! a broker: the banner says where to read how to try them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_core::{EventId, Timestamp};
use tributary_gateway::ApiKeys;

use crate::app::{self, Role};
use crate::config::Config;
use crate::ingest::{FileArgs, Summary};

/// Options of `tributary demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the embedded log and databases live (kept between runs: a restarted demo
    /// resumes from its last checkpoint).
    #[arg(long, default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// Address of the HTTP server [default: `TRIBUTARY__HTTP__LISTEN` when set, else
    /// 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Events per second from each source.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Stop after this many seconds (runs until Ctrl-C when absent).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// Runs the demo until Ctrl-C (or `--seconds`).
///
/// # Errors
/// When the data directory cannot be created or a role fails to start.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let key = demo_key(&args.data_dir, std::env::var(ApiKeys::BOOTSTRAP_ENV).ok())?;
    let config = Config::demo(&args.data_dir, args.listen)?;
    let shutdown = app::shutdown_on_signal();
    // The embedded log opens in one process once: the file source reads before the node
    // opens it.
    let sample = write_sample(&args.data_dir, Timestamp::now().millis())?;
    let summary = crate::ingest::run_with(
        &config,
        "the demo's config",
        FileArgs::new(SAMPLE_STREAM, vec![sample.clone()]),
        shutdown.clone(),
    )
    .await
    .context("the file source could not read the demo's sample file")?;
    if let Some(seconds) = args.seconds {
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            token.cancel();
        });
    }
    let running = app::start_with_keys(
        config,
        &[Role::All],
        shutdown.clone(),
        ApiKeys::new([&key.value]),
    )
    .await?;
    let addr = running.http_addr;
    banner(addr, &key);
    eprintln!("{}", file_source_lines(&sample, &summary));
    let key = key.value;

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut generators = tokio::task::JoinSet::new();
    for source in [Source::Clicks, Source::Orders, Source::Sensors] {
        let generator = Generator {
            source,
            client: client.clone(),
            base: base.clone(),
            key: key.clone(),
            rate: args.rate.max(1),
            rng: StdRng::from_entropy(),
        };
        generators.spawn(generator.run(shutdown.clone()));
    }
    let result = running.wait().await;
    generators.shutdown().await;
    result
}

/// The sample export the file source reads at each start, in the data directory.
pub const SAMPLE_FILE: &str = "samples/sensors-export.ndjson";
/// The stream it goes to.
pub const SAMPLE_STREAM: &str = "sensors";
/// Its lines, the invalid ones included.
pub const SAMPLE_EVENTS: u64 = 3000;
/// Its invalid lines (each becomes a dead letter): malformed JSON, a time that is no time,
/// a line that is no JSON object.
pub const SAMPLE_BAD_LINES: [u64; 3] = [500, 1500, 2500];
/// How far back its readings go: their times are spread over this span before `now`,
/// oldest first.
const SAMPLE_SPAN_MS: i64 = 20_000;

/// Writes the sample export ([`SAMPLE_FILE`] in `data_dir`, replacing an earlier one and
/// its progress): sensor readings without ids (the file source derives them from the file
/// and the line), times over the [`SAMPLE_SPAN_MS`] before `now`, and the
/// [`SAMPLE_BAD_LINES`]. Returns its path.
fn write_sample(data_dir: &Path, now: i64) -> anyhow::Result<PathBuf> {
    use std::fmt::Write as _;
    let path = data_dir.join(SAMPLE_FILE);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = StdRng::from_entropy();
    let mut text = String::new();
    for line in 1..=SAMPLE_EVENTS {
        let ts = now - SAMPLE_SPAN_MS
            + SAMPLE_SPAN_MS * i64::try_from(line)? / i64::try_from(SAMPLE_EVENTS)?;
        let sensor = format!("sensor-{}", rng.gen_range(1..7));
        let reading = json!({
            "ts": ts, "key": sensor,
            "payload": {
                "temperature_c": f64::from(rng.gen_range(150..300)) / 10.0,
                "humidity": rng.gen_range(30..70),
                "exported": true,
            }
        });
        let written = match SAMPLE_BAD_LINES.iter().position(|&bad| bad == line) {
            Some(0) => format!(
                "{{\"ts\": {ts}, \"key\": \"{sensor}\", \"payload\": {{\"temperature_c\": 2"
            ),
            Some(1) => json!({"ts": "yesterday", "key": sensor, "payload": {}}).to_string(),
            Some(_) => json!(["not", "an", "object"]).to_string(),
            None => reading.to_string(),
        };
        writeln!(text, "{written}")?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let mut progress = path.clone().into_os_string();
    progress.push(".ingest-progress.json");
    match std::fs::remove_file(&progress) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).context("cannot remove the sample's old progress");
        }
        _ => {}
    }
    Ok(path)
}

/// What the file source did with the sample, and how to try the other sources.
fn file_source_lines(sample: &Path, summary: &Summary) -> String {
    let refused = summary.refused();
    format!(
        "File source: {} -> stream {SAMPLE_STREAM}: accepted {}, refused {refused} \
         (dead letters {refused}, in /v1/dead-letters)\n\
         Also: `tributary ingest` reads NDJSON/CSV files (.gz, .zst); the Kafka and MQTT \
         sources need a broker: see docs/INGEST.md (scripts/services.sh up starts both).",
        sample.display(),
        summary.accepted(),
    )
}

/// The file in the data directory holding the demo's admin key.
const KEY_FILE: &str = "api-key";

/// The demo's admin key, and where it comes from.
#[derive(Debug)]
struct DemoKey {
    value: String,
    origin: String,
}

/// The demo's admin key: `from_env` (the value of [`ApiKeys::BOOTSTRAP_ENV`]) when set;
/// else the key kept in `data_dir` ([`KEY_FILE`]), made (32 random bytes) and written
/// there (readable by its owner only) at the first run.
fn demo_key(data_dir: &Path, from_env: Option<String>) -> anyhow::Result<DemoKey> {
    if let Some(key) = from_env
        && !key.trim().is_empty()
    {
        return Ok(DemoKey {
            value: key.trim().to_owned(),
            origin: format!("from {}", ApiKeys::BOOTSTRAP_ENV),
        });
    }
    let path = data_dir.join(KEY_FILE);
    let origin = format!(
        "kept in {}; set {} to use your own",
        path.display(),
        ApiKeys::BOOTSTRAP_ENV
    );
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => {
            return Ok(DemoKey {
                value: key.trim().to_owned(),
                origin,
            });
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let mut secret = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let hex = hex::encode(secret);
    let value = format!("trb_demo_{hex}");
    write_private(&path, &value).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DemoKey { value, origin })
}

/// Writes `text` to a new file at `path`, readable and writable by its owner only (on Unix).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// The human-readable banner, on stderr: stdout carries only the log's JSON lines.
fn banner(addr: SocketAddr, key: &DemoKey) {
    let DemoKey { value: key, origin } = key;
    eprintln!(
        r#"
Tributary demo: embedded mode, every role in this process.
Three sources are sending events: clicks, orders, sensors.

  URL:      http://{addr}
  API key:  {key}
            ({origin})
  Page:     http://{addr}/#key={key}

Pipelines: clicks_per_page (count per page, 1-minute windows), revenue_by_country
(paid orders: revenue, average and p95 amount, buyers; 5-minute windows every minute),
sessions_per_user (click sessions, SQL), temperature_per_sensor (average, min, max).

Try:
  curl -s -H 'Authorization: Bearer {key}' http://{addr}/v1/pipelines/revenue_by_country/results
  curl -s -H 'Authorization: Bearer {key}' http://{addr}/v1/pipelines/clicks_per_page/results
  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
       -d '{{"key":"/pricing","payload":{{"user":"you"}}}}' http://{addr}/v1/streams/clicks/events

Scoped keys (ingest, read, admin), each shown once:
  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
       -d '{{"scopes":["read"],"description":"dashboards"}}' http://{addr}/v1/keys

Also: /v1/streams, /v1/streams/orders/events, /v1/pipelines, /v1/dead-letters (late
events and refused requests, with the reason), /v1/keys, /metrics, /openapi.json.
Stop with Ctrl-C.
"#
    );
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Clicks,
    Orders,
    Sensors,
}

impl Source {
    fn stream(self) -> &'static str {
        match self {
            Self::Clicks => "clicks",
            Self::Orders => "orders",
            Self::Sensors => "sensors",
        }
    }
}

#[derive(Debug)]
struct Generator {
    source: Source,
    client: reqwest::Client,
    base: String,
    key: String,
    rate: u32,
    rng: StdRng,
}

const TICK: Duration = Duration::from_millis(250);

impl Generator {
    async fn run(mut self, shutdown: CancellationToken) {
        let url = format!("{}/v1/streams/{}/events", self.base, self.source.stream());
        let mut previous: Option<(String, String)> = None;
        let mut ticker = tokio::time::interval(TICK);
        let per_tick = (self.rate / 4).max(1);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // One request in twenty is a client retry: the same ids again.
            let (content_type, body) = match previous.take() {
                Some(batch) if self.rng.gen_bool(0.05) => batch,
                _ => self.batch(per_tick),
            };
            let sent = self
                .client
                .post(&url)
                .bearer_auth(&self.key)
                .header("content-type", &content_type)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    tracing::warn!(source = self.source.stream(), status = %response.status(), "generator request refused");
                }
                Err(err) => {
                    tracing::debug!(source = self.source.stream(), error = %err, "generator request failed");
                }
            }
            previous = Some((content_type, body));
        }
    }

    /// A batch of events: JSON arrays for clicks and orders, NDJSON for sensors.
    fn batch(&mut self, n: u32) -> (String, String) {
        let events: Vec<Value> = (0..n).map(|_| self.event()).collect();
        match self.source {
            Source::Sensors => {
                let lines: Vec<String> = events.iter().map(Value::to_string).collect();
                ("application/x-ndjson".to_owned(), lines.join("\n"))
            }
            Source::Clicks | Source::Orders => (
                "application/json".to_owned(),
                Value::Array(events).to_string(),
            ),
        }
    }

    fn event(&mut self) -> Value {
        let now = Timestamp::now().millis();
        // Out of order by up to 8 s; one event in 500 arrives three minutes late.
        let delay = if self.rng.gen_bool(0.002) {
            180_000
        } else {
            self.rng.gen_range(0..8_000)
        };
        let ts = now - delay;
        // Clients name their events, so a retried request carries the same ids.
        let id = EventId::generate();
        let rng = &mut self.rng;
        match self.source {
            Source::Clicks => {
                let page = ["/", "/pricing", "/docs", "/blog", "/signup"][rng.gen_range(0..5)];
                let referrer = ["search", "social", "direct"][rng.gen_range(0..3)];
                json!({
                    "id": id.as_str(), "ts": ts, "key": page,
                    "payload": {
                        "user": format!("u{}", rng.gen_range(1..200)),
                        "action": if rng.gen_bool(0.8) { "view" } else { "click" },
                        "referrer": referrer,
                    }
                })
            }
            Source::Orders => {
                let country = ["fr", "de", "us", "jp", "br"][rng.gen_range(0..5)];
                let status = ["paid", "paid", "paid", "pending", "cancelled"][rng.gen_range(0..5)];
                json!({
                    "id": id.as_str(), "ts": ts, "key": country,
                    "payload": {
                        "order_id": EventId::generate().as_str(),
                        "country": country,
                        "status": status,
                        "customer": format!("c{}", rng.gen_range(1..500)),
                        "amount": f64::from(rng.gen_range(500..50_000)) / 100.0,
                        "currency": "EUR",
                        "items": rng.gen_range(1..6),
                    }
                })
            }
            Source::Sensors => {
                let sensor = format!("sensor-{}", rng.gen_range(1..7));
                json!({
                    "id": id.as_str(), "ts": ts, "key": sensor,
                    "payload": {
                        "temperature_c": f64::from(rng.gen_range(150..300)) / 10.0,
                        "humidity": rng.gen_range(30..70),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = demo_key(dir.path(), None).unwrap();
        assert!(first.value.starts_with("trb_demo_"));
        assert_eq!(first.value.len(), "trb_demo_".len() + 64);
        assert!(first.origin.contains("api-key"), "{}", first.origin);
        let again = demo_key(dir.path(), Some("  ".to_owned())).unwrap();
        assert_eq!(again.value, first.value);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let own = demo_key(dir.path(), Some(" mine ".to_owned())).unwrap();
        assert_eq!(own.value, "mine");
        assert_eq!(demo_key(dir.path(), None).unwrap().value, first.value);
        assert_ne!(
            demo_key(tempfile::tempdir().unwrap().path(), None)
                .unwrap()
                .value,
            first.value
        );
    }
}
