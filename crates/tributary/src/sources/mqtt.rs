//! The MQTT source: topic filters of an MQTT broker (JSON payloads), read into a stream.
//!
//! Contract:
//! - It connects to `url` (`mqtt://host:port`, plain TCP, MQTT 3.1.1) as `client_id` with a
//!   persistent session (clean session off) and subscribes to its `topics` (filters) at
//!   QoS 1. The broker keeps what it has not acknowledged, and what is published while it is
//!   away, for the session, and delivers it again on the next connection.
//! - It reads messages in batches of up to `batch_size` (fewer when no more arrive within
//!   [`LINGER`]; the broker's in-flight limit, such as Mosquitto's `max_inflight_messages`,
//!   bounds a batch too).
//! - Each payload is mapped ([`mapping::to_event_shape`]: `id_field`, `ts_field` in
//!   `ts_format`, `key_field`) and validated as an event on its own. A payload without an id
//!   gets `mqtt:{topic}:{digest}`, the digest being the first 32 hex digits of the payload's
//!   SHA-256 ([`payload_digest`]): a redelivery gets the same id, and two identical payloads
//!   without an id on one topic are one event.
//! - A batch's refused messages are kept as dead letters (`origin: {"kind": "mqtt",
//!   "topic"}`), then its valid events are appended to the stream; only once both returned
//!   is each message of the batch acknowledged (PUBACK). A crash in between gets the batch
//!   again from the broker: at least once, and the stream's consumers de-duplicate by id.
//! - While the log (or the document store) is unavailable, the source holds its batch and
//!   retries it with backoff (0.5 s doubling to [`batch::MAX_BACKOFF`]), acknowledging nothing;
//!   a broker that cannot be reached is retried every second. A log that refuses the batch
//!   for good (not retryable) fails the source.
//! - Stopped (shutdown), it stops between batches or during a retry, with nothing of the
//!   batch in flight acknowledged.

use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::{DeadLetter, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{HealthReporter, Source, SourceError};

use super::batch::{self, Checked, sleep_or_cancel};
use super::mapping::{self, TsFormat};
use crate::ingest::records::Fields;

/// How long a batch waits for more messages after its first.
pub const LINGER: Duration = Duration::from_millis(100);

/// The default port of MQTT over plain TCP.
const DEFAULT_PORT: u16 = 1883;

/// The wait before connecting again to a broker that could not be reached.
const RECONNECT: Duration = Duration::from_secs(1);

/// An MQTT source (see the module's documentation).
#[derive(Debug)]
pub struct MqttSource {
    /// Its name.
    pub name: String,
    /// The stream it feeds.
    pub stream: StreamName,
    /// The broker's host and port.
    pub broker: (String, u16),
    /// Its client id, which names its session at the broker.
    pub client_id: String,
    /// The topic filters it subscribes to.
    pub topics: Vec<String>,
    /// The members holding id, ts and key.
    pub fields: Fields,
    /// How `ts` is written.
    pub ts_format: TsFormat,
    /// The most messages per batch.
    pub batch_size: usize,
}

/// The host and port of `url` (`mqtt://host[:port]` or `tcp://host[:port]`, port 1883 by
/// default; an IPv6 host in brackets).
///
/// # Errors
/// When `url` is not of that form.
pub fn broker_of(url: &str) -> anyhow::Result<(String, u16)> {
    let invalid = || anyhow::anyhow!("url must be mqtt://host[:port] (no TLS), not {url:?}");
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(invalid)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| invalid())?)
        }
        _ => (rest, DEFAULT_PORT),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', '?', '#']) || port == 0 {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

/// The first 32 hex digits of the SHA-256 of `payload`: a message's identity.
#[must_use]
pub fn payload_digest(payload: &[u8]) -> String {
    hex::encode(&Sha256::digest(payload)[..16])
}

#[async_trait]
impl Source for MqttSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(
        &self,
        ingest: IngestService,
        _health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut options = MqttOptions::new(&self.client_id, &self.broker.0, self.broker.1);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15));
        let (client, events) = AsyncClient::new(options, self.batch_size.max(16));
        // Unbounded: the broker's in-flight limit bounds it, and the task polling the
        // connection (which also sends the acknowledgements) must never wait on it.
        let (sender, mut messages) = mpsc::unbounded_channel();
        let stop = cancel.child_token();
        let poller = tokio::spawn(poll(
            events,
            client.clone(),
            self.subscriptions(),
            sender,
            stop.clone(),
            self.name.clone(),
        ));
        let stop_poller = stop.drop_guard();
        tracing::info!(
            source = self.name,
            broker = format!("{}:{}", self.broker.0, self.broker.1),
            client_id = self.client_id,
            topics = ?self.topics,
            stream = %self.stream,
            "mqtt source started"
        );
        loop {
            let batch = tokio::select! {
                () = cancel.cancelled() => break,
                batch = next_batch(&mut messages, self.batch_size) => batch,
            };
            if batch.is_empty() {
                break; // The poller ended: only when cancelled.
            }
            let checked = self.check(&batch, &ingest);
            if !batch::store(&ingest, &self.name, &self.stream, &checked, &cancel).await? {
                break;
            }
            for publish in &batch {
                if let Err(error) = client.ack(publish).await {
                    // Not acknowledged: delivered again, with the same ids.
                    tracing::warn!(
                        source = self.name,
                        error = error_chain(&error),
                        "mqtt source: cannot acknowledge a message; it will be delivered again"
                    );
                }
            }
        }
        drop(stop_poller);
        let _ = poller.await;
        Ok(())
    }
}

impl MqttSource {
    /// Its subscriptions: each topic filter at QoS 1.
    fn subscriptions(&self) -> Vec<rumqttc::SubscribeFilter> {
        self.topics
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
            .collect()
    }

    /// Maps and validates each message.
    fn check(&self, messages: &[Publish], ingest: &IngestService) -> Checked {
        let arrival = ingest.arrival();
        let mut checked = Checked::default();
        for m in messages {
            let digest = payload_digest(&m.payload);
            let derived = || format!("mqtt:{}:{digest}", m.topic);
            let event = mapping::to_event_shape(&m.payload, &self.fields, self.ts_format, derived)
                .and_then(|value| ingest.validate(value, &self.stream, arrival));
            match event {
                Ok(event) => checked.events.push(event),
                Err(reason) => checked.letters.push(DeadLetter::mqtt(
                    &self.stream,
                    (&m.topic, &digest),
                    reason,
                    &m.payload,
                )),
            }
        }
        checked
    }
}

/// Up to `max` messages: the first one waited for, then those arriving within [`LINGER`].
/// Empty when the poller ended.
async fn next_batch(messages: &mut mpsc::UnboundedReceiver<Publish>, max: usize) -> Vec<Publish> {
    let Some(first) = messages.recv().await else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, messages.recv()).await {
            Ok(Some(message)) => batch.push(message),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Drives the connection (which also sends the subscriptions and acknowledgements) until
/// `stop`: subscribes on every connection, hands each QoS 1 message to `sender`, and
/// reconnects after [`RECONNECT`] when the broker is unreachable or the connection drops.
async fn poll(
    mut events: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<rumqttc::SubscribeFilter>,
    sender: mpsc::UnboundedSender<Publish>,
    stop: CancellationToken,
    name: String,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    source = name,
                    session_present = ack.session_present,
                    "mqtt source connected"
                );
                // Subscribing again is harmless, and covers a session the broker lost.
                if let Err(error) = client.try_subscribe_many(subscriptions.clone()) {
                    tracing::warn!(source = name, error = %error, "mqtt source: cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if sender.send(publish).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(error) => {
                let message = match &error {
                    ConnectionError::ConnectionRefused(code) => format!("refused: {code:?}"),
                    other => error_chain(other),
                };
                tracing::warn!(
                    source = name,
                    error = message,
                    retry_in = ?RECONNECT,
                    "mqtt source: disconnected from the broker; reconnecting"
                );
                if sleep_or_cancel(RECONNECT, &stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn broker_urls_are_parsed() {
        assert_eq!(
            broker_of("mqtt://127.0.0.1:18830").unwrap(),
            ("127.0.0.1".to_owned(), 18830)
        );
        assert_eq!(
            broker_of("tcp://broker.local").unwrap(),
            ("broker.local".to_owned(), 1883)
        );
        assert_eq!(broker_of("mqtt://[::1]:9").unwrap(), ("::1".to_owned(), 9));
        assert_eq!(broker_of("mqtt://[::1]").unwrap(), ("::1".to_owned(), 1883));
        for bad in [
            "127.0.0.1:1883",
            "mqtts://h:8883",
            "mqtt://",
            "mqtt://h:x",
            "mqtt://h:0",
        ] {
            assert!(broker_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_digest_identifies_the_payload() {
        let digest = payload_digest(b"{}");
        assert_eq!(digest.len(), 32);
        assert_eq!(digest, "44136fa355b3678a1146ad16f7e8649e");
        assert_ne!(payload_digest(b"{ }"), digest);
    }
}
