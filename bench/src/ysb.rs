//! The events of the Yahoo Streaming Benchmark (YSB, "Benchmarking Streaming Computation
//! Engines at Yahoo!", 2015; github.com/yahoo/streaming-benchmarks): ad events as its
//! Clojure generator writes them into Kafka, and the ad → campaign table its pipeline
//! joins them with.
//!
//! As in YSB: 100 campaigns of 10 ads each, 100 users and 100 pages, all UUIDs; every event
//! is `{"user_id", "page_id", "ad_id", "ad_type", "event_type", "event_time",
//! "ip_address"}` with `ad_type` one of five, `event_type` one of `view`, `click`,
//! `purchase` (uniform), `event_time` the epoch milliseconds as a string and the IP
//! address fixed. The generator is deterministic for a seed; event ids are unique
//! (`{run}-{n}`). The events carry no key (YSB's records have none), so the log spreads
//! them over its partitions by id.

use serde_json::{Map, Value, json};
use tributary_core::{Event, EventId, StreamName, Timestamp};

/// Campaigns, as in YSB.
pub const CAMPAIGNS: usize = 100;
/// Ads per campaign, as in YSB.
pub const ADS_PER_CAMPAIGN: usize = 10;
/// Users and pages, as in YSB (`make-ids 100`).
const USERS: usize = 100;
const PAGES: usize = 100;

const AD_TYPES: &[&str] = &["banner", "modal", "sponsored-search", "mail", "mobile"];
const EVENT_TYPES: &[&str] = &["view", "click", "purchase"];

/// One generated ad event, with what the benchmark's pipeline needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdEvent {
    /// Unique id.
    pub id: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The campaign of its ad (the ground truth of the lookup; not in the event).
    pub campaign: usize,
    /// `view`, `click` or `purchase`.
    pub event_type: &'static str,
    /// The YSB record.
    pub payload: Map<String, Value>,
}

impl AdEvent {
    /// The event as the log takes it: no key, event time `ts_ms`.
    ///
    /// # Errors
    /// When the id is invalid (cannot happen for generated ids).
    pub fn to_event(&self, stream: &StreamName) -> anyhow::Result<Event> {
        Ok(Event {
            id: EventId::new(self.id.clone()).map_err(anyhow::Error::msg)?,
            stream: stream.clone(),
            ts: Timestamp::from_millis(self.ts_ms),
            key: None,
            payload: self.payload.clone(),
        })
    }
}

/// A seeded generator of YSB ad events and of its campaigns.
#[derive(Debug, Clone)]
pub struct AdGenerator {
    run: String,
    next: u64,
    state: u64,
    /// Campaign ids, `CAMPAIGNS` of them.
    campaigns: Vec<String>,
    /// Ad ids; ad `i` belongs to campaign `i / ADS_PER_CAMPAIGN`.
    ads: Vec<String>,
    users: Vec<String>,
    pages: Vec<String>,
}

impl AdGenerator {
    /// A generator whose ids start with `run` and whose choices (and UUIDs) follow `seed`.
    #[must_use]
    pub fn new(run: impl Into<String>, seed: u64) -> Self {
        let mut g = Self {
            run: run.into(),
            next: 0,
            state: seed,
            campaigns: Vec::new(),
            ads: Vec::new(),
            users: Vec::new(),
            pages: Vec::new(),
        };
        g.campaigns = (0..CAMPAIGNS).map(|_| g.uuid()).collect();
        g.ads = (0..CAMPAIGNS * ADS_PER_CAMPAIGN)
            .map(|_| g.uuid())
            .collect();
        g.users = (0..USERS).map(|_| g.uuid()).collect();
        g.pages = (0..PAGES).map(|_| g.uuid()).collect();
        g
    }

    /// SplitMix64, as [`crate::events::ClickGenerator`].
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// A random (version 4 shaped) UUID.
    fn uuid(&mut self) -> String {
        let bits = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        uuid::Uuid::from_u128(bits).hyphenated().to_string()
    }

    /// The campaign of every ad, as `(ad_id, campaign_id)`, in ad order.
    pub fn ad_campaigns(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ads
            .iter()
            .enumerate()
            .map(|(i, ad)| (ad.as_str(), self.campaigns[i / ADS_PER_CAMPAIGN].as_str()))
    }

    /// The id of campaign `i`.
    #[must_use]
    pub fn campaign_id(&self, i: usize) -> &str {
        &self.campaigns[i]
    }

    /// The ad → campaign table as CSV, with the header `ad_id,campaign_id`.
    #[must_use]
    pub fn campaigns_csv(&self) -> String {
        let mut csv = String::from("ad_id,campaign_id\n");
        for (ad, campaign) in self.ad_campaigns() {
            csv.push_str(ad);
            csv.push(',');
            csv.push_str(campaign);
            csv.push('\n');
        }
        csv
    }

    /// The next event, with event time `ts_ms`.
    pub fn event(&mut self, ts_ms: i64) -> AdEvent {
        let n = self.next;
        self.next += 1;
        let ad = self.below(self.ads.len());
        let user = self.below(self.users.len());
        let page = self.below(self.pages.len());
        let ad_type = AD_TYPES[self.below(AD_TYPES.len())];
        let event_type = EVENT_TYPES[self.below(EVENT_TYPES.len())];
        let mut payload = Map::new();
        payload.insert("user_id".into(), json!(self.users[user]));
        payload.insert("page_id".into(), json!(self.pages[page]));
        payload.insert("ad_id".into(), json!(self.ads[ad]));
        payload.insert("ad_type".into(), json!(ad_type));
        payload.insert("event_type".into(), json!(event_type));
        payload.insert("event_time".into(), json!(ts_ms.to_string()));
        payload.insert("ip_address".into(), json!("1.2.3.4"));
        AdEvent {
            id: format!("{}-{n}", self.run),
            ts_ms,
            campaign: ad / ADS_PER_CAMPAIGN,
            event_type,
            payload,
        }
    }

    /// Uniform jitter in `0..max_ms` milliseconds, for out-of-order timestamps.
    pub fn jitter_ms(&mut self, max_ms: usize) -> i64 {
        i64::try_from(self.below(max_ms)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaigns_ads_and_events_as_ysb() {
        let mut g = AdGenerator::new("y", 3);
        let table: Vec<_> = g.ad_campaigns().collect();
        assert_eq!(table.len(), CAMPAIGNS * ADS_PER_CAMPAIGN);
        let campaigns: std::collections::BTreeSet<_> = table.iter().map(|(_, c)| *c).collect();
        assert_eq!(campaigns.len(), CAMPAIGNS);
        assert!(uuid::Uuid::parse_str(table[0].0).is_ok(), "{}", table[0].0);
        assert_eq!(g.campaigns_csv().lines().count(), 1 + table.len());

        let events: Vec<AdEvent> = (0..3000).map(|i| g.event(1_000 + i)).collect();
        let views = events.iter().filter(|e| e.event_type == "view").count();
        assert!((800..1200).contains(&views), "{views} views of 3000");
        let e = &events[0];
        let ad = e.payload["ad_id"].as_str().unwrap();
        let campaign = g.ad_campaigns().find(|(a, _)| *a == ad).unwrap().1;
        assert_eq!(campaign, g.campaign_id(e.campaign));
        assert_eq!(e.payload["event_time"], json!("1000"));
        assert_eq!(e.payload.len(), 7);
    }

    #[test]
    fn same_seed_same_events() {
        let a: Vec<AdEvent> = {
            let mut g = AdGenerator::new("y", 1);
            (0..10).map(|i| g.event(i)).collect()
        };
        let mut g = AdGenerator::new("y", 1);
        let b: Vec<AdEvent> = (0..10).map(|i| g.event(i)).collect();
        assert_eq!(a, b);
    }
}
