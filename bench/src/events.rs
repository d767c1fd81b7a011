//! Realistic, reproducible click events: a page key drawn from a skewed popularity
//! distribution over 200 pages, and a payload of about 200 bytes (user, session, referrer,
//! user agent, country, device, timings), as a web analytics tag would send.
//!
//! The generator is deterministic for a given seed, so runs are comparable; ids are unique
//! per generator (`{run}-{n}`), so de-duplication never hides an event.

use serde_json::{Map, Value, json};
use tributary_core::{Event, EventId, StreamName, Timestamp};

/// Pages of the simulated site.
const PAGES: usize = 200;

const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "https://www.bing.com/",
    "https://twitter.com/",
    "",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64) Chrome/126.0",
];

const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "BR", "IN", "JP", "NL", "PL", "ES"];
const DEVICES: &[&str] = &["desktop", "mobile", "tablet"];

/// One generated click, before it is encoded for a transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    /// Unique id.
    pub id: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The page.
    pub key: String,
    /// About 200 bytes of JSON.
    pub payload: Map<String, Value>,
}

impl Click {
    /// The event as the HTTP API takes it (`id`, `ts` in epoch ms, `key`, `payload`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "ts": self.ts_ms,
            "key": self.key,
            "payload": self.payload,
        })
    }

    /// The event as the log takes it.
    ///
    /// # Errors
    /// When the id is invalid (cannot happen for generated ids).
    pub fn to_event(&self, stream: &StreamName) -> anyhow::Result<Event> {
        Ok(Event {
            id: EventId::new(self.id.clone()).map_err(anyhow::Error::msg)?,
            stream: stream.clone(),
            ts: Timestamp::from_millis(self.ts_ms),
            key: Some(self.key.clone()),
            payload: self.payload.clone(),
        })
    }
}

/// A seeded generator of [`Click`]s.
#[derive(Debug, Clone)]
pub struct ClickGenerator {
    run: String,
    next: u64,
    state: u64,
}

impl ClickGenerator {
    /// A generator whose ids start with `run` and whose choices follow `seed`.
    #[must_use]
    pub fn new(run: impl Into<String>, seed: u64) -> Self {
        Self {
            run: run.into(),
            next: 0,
            state: seed,
        }
    }

    /// SplitMix64: small, fast, good enough for picking values.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, values: &[&'a str]) -> &'a str {
        let len = u64::try_from(values.len()).unwrap_or(1);
        let i = usize::try_from(self.below(len)).unwrap_or(0);
        values[i]
    }

    /// The next click, with event time `ts_ms`.
    pub fn click(&mut self, ts_ms: i64) -> Click {
        let n = self.next;
        self.next += 1;
        // Skewed popularity: page i with density ~ 1/sqrt(i).
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let page = ((self.unit().powi(2) * PAGES as f64) as usize).min(PAGES - 1);
        let key = match page {
            0 => "/".to_owned(),
            1 => "/pricing".to_owned(),
            2 => "/docs".to_owned(),
            p => format!("/products/{p:04}"),
        };
        let mut payload = Map::new();
        payload.insert("user".into(), json!(format!("u-{:06}", self.below(50_000))));
        payload.insert("session".into(), json!(format!("{:016x}", self.next_u64())));
        payload.insert("referrer".into(), json!(self.pick(REFERRERS)));
        payload.insert("user_agent".into(), json!(self.pick(USER_AGENTS)));
        payload.insert("country".into(), json!(self.pick(COUNTRIES)));
        payload.insert("device".into(), json!(self.pick(DEVICES)));
        payload.insert("duration_ms".into(), json!(self.below(30_000)));
        Click {
            id: format!("{}-{n}", self.run),
            ts_ms,
            key,
            payload,
        }
    }

    /// Uniform jitter in `0..max_ms` milliseconds, for out-of-order timestamps.
    pub fn jitter_ms(&mut self, max_ms: u64) -> i64 {
        i64::try_from(self.below(max_ms)).unwrap_or(0)
    }
}

/// The compact JSON size of a click's payload, in bytes.
#[must_use]
pub fn payload_bytes(click: &Click) -> usize {
    serde_json::to_vec(&click.payload).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_about_200_bytes_and_ids_unique() {
        let mut g = ClickGenerator::new("r", 7);
        let clicks: Vec<Click> = (0..1000).map(|i| g.click(i)).collect();
        let mean = clicks.iter().map(payload_bytes).sum::<usize>() / clicks.len();
        assert!((180..=220).contains(&mean), "mean payload {mean} bytes");
        let ids: std::collections::BTreeSet<_> = clicks.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), clicks.len());
        let keys: std::collections::BTreeSet<_> = clicks.iter().map(|c| c.key.clone()).collect();
        assert!(keys.len() > 50, "only {} distinct pages", keys.len());
    }

    #[test]
    fn same_seed_same_clicks() {
        let a: Vec<Click> = {
            let mut g = ClickGenerator::new("r", 1);
            (0..10).map(|i| g.click(i)).collect()
        };
        let mut g = ClickGenerator::new("r", 1);
        let b: Vec<Click> = (0..10).map(|i| g.click(i)).collect();
        assert_eq!(a, b);
    }
}
