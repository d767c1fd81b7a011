//! The MQTT source: topic filters of an MQTT broker (JSON payloads), read into a stream.
//!
//! Contract:
//! - It connects to `url` (`mqtt://host:port`, plain TCP, or `mqtts://host:port`, TLS through
//!   rustls, MQTT 3.1.1) as `client_id` with a persistent session (clean session off) and
//!   subscribes to its `topics` (filters) at QoS 1.
//! - Over TLS it verifies the broker's certificate against the certificate authorities of
//!   `ca_file` (PEM), or the Mozilla roots (`webpki-roots`) without one, for the url's host
//!   (a name or an IP address, as in the certificate's subject alternative names).
//! - With `username`, it presents that user name and its password ([`Credentials`]: read
//!   from an environment variable or a file once, when the source is configured; never
//!   logged, never shown by `Debug`). A broker that refuses them (bad user name or
//!   password, not authorized) or a TLS handshake that fails makes the source's health
//!   `failed` with the reason (so `/readyz` answers 503 and logs it); the source keeps
//!   retrying every [`RECONNECT_REFUSED`] and is `running` again once the broker accepts
//!   it. The broker keeps what it has not acknowledged, and what is published while it is
//!   away, for the session, and delivers it again on the next connection.
//! - It reads messages in batches of up to `batch_size`, closed early when no more message
//!   arrives within [`GAP`] of the last one, or [`LINGER`] after the first. The broker's
//!   in-flight limit (Mosquitto's `max_inflight_messages`) bounds a batch too: it sends no
//!   more until the batch is acknowledged, so a batch waiting for more would only wait.
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
//!   a broker that cannot be reached is retried every second (the source stays `running`:
//!   a broker down is an outage, not a misconfiguration). A log that refuses the batch
//!   for good (not retryable) fails the source.
//! - Stopped (shutdown), it stops between batches or during a retry, with nothing of the
//!   batch in flight acknowledged.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    Publish, QoS, TlsConfiguration, Transport,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_core::dead_letter::error_chain;
use tributary_core::{DeadLetter, StreamName};
use tributary_gateway::ingest::IngestService;
use tributary_gateway::sources::{Health, HealthReporter, Source, SourceError};

use super::batch::{self, Checked, sleep_or_cancel};
use super::mapping::{self, TsFormat};
use crate::ingest::records::Fields;

/// The longest a batch waits for more messages after its first.
pub const LINGER: Duration = Duration::from_millis(100);

/// How long a batch waits for one more message: a pause this long means the broker sends
/// nothing more for now (its in-flight window is full, or nothing more was published).
pub const GAP: Duration = Duration::from_millis(2);

/// The default port of MQTT over plain TCP.
const DEFAULT_PORT: u16 = 1883;

/// The default port of MQTT over TLS.
const DEFAULT_TLS_PORT: u16 = 8883;

/// The wait before connecting again to a broker that could not be reached.
const RECONNECT: Duration = Duration::from_secs(1);

/// The wait before connecting again to a broker that refused the source's credentials or
/// whose TLS handshake failed: a fix takes someone's hand.
pub const RECONNECT_REFUSED: Duration = Duration::from_secs(5);

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Its host name or IP address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Whether the connection is over TLS (`mqtts://`).
    pub tls: bool,
}

/// The user name and password the source presents to the broker.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where a password comes from: never the config file itself.
#[derive(Debug, Clone, Copy)]
pub enum PasswordFrom<'a> {
    /// No password (a user name alone).
    Nowhere,
    /// The value of an environment variable.
    Env(&'a str),
    /// The first line of a file.
    File(&'a Path),
}

impl Credentials {
    /// `username` with its password, read now from where `from` says.
    ///
    /// # Errors
    /// When the variable is not set or the file cannot be read.
    pub fn new(username: &str, from: PasswordFrom<'_>) -> anyhow::Result<Self> {
        let password = match from {
            PasswordFrom::Nowhere => String::new(),
            PasswordFrom::Env(name) => std::env::var(name)
                .with_context(|| format!("password_env: the variable {name} is not set"))?,
            PasswordFrom::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("password_file: cannot read {}", path.display()))?;
                text.lines().next().unwrap_or_default().to_owned()
            }
        };
        Ok(Self {
            username: username.to_owned(),
            password,
        })
    }
}

/// The TLS settings of a connection to `broker`: the certificate authorities of `ca_file`
/// (PEM), or the Mozilla roots without one; rustls with its `ring` provider.
///
/// # Errors
/// When `ca_file` cannot be read or holds no certificate.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("ca_file: cannot read {}", path.display()))?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("ca_file: {} is not PEM", path.display()))?;
            if certificates.is_empty() {
                bail!("ca_file: {} holds no certificate", path.display());
            }
            for certificate in certificates {
                roots.add(certificate).with_context(|| {
                    format!("ca_file: a certificate of {} is invalid", path.display())
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version in common with the crypto provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An MQTT source (see the module's documentation).
#[derive(Debug)]
pub struct MqttSource {
    /// Its name.
    pub name: String,
    /// The stream it feeds.
    pub stream: StreamName,
    /// The broker.
    pub broker: Broker,
    /// The TLS settings, for a broker over TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The user name and password presented, if any.
    pub credentials: Option<Credentials>,
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

/// The broker of `url`: `mqtt://host[:port]` or `tcp://host[:port]` (plain TCP, port 1883
/// by default), `mqtts://host[:port]` or `ssl://host[:port]` (TLS, port 8883 by default); an
/// IPv6 host in brackets.
///
/// # Errors
/// When `url` is not of that form.
pub fn broker_of(url: &str) -> anyhow::Result<Broker> {
    let invalid =
        || anyhow::anyhow!("url must be mqtt://host[:port] or mqtts://host[:port], not {url:?}");
    let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("tcp://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("ssl://") {
        (rest, true)
    } else {
        return Err(invalid());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| invalid())?)
        }
        _ => (rest, if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', '?', '#']) || port == 0 {
        return Err(invalid());
    }
    Ok(Broker {
        host: host.to_owned(),
        port,
        tls,
    })
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
        health: HealthReporter,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut options = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15));
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        if let Some(credentials) = &self.credentials {
            options.set_credentials(&credentials.username, &credentials.password);
        }
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
            health.clone(),
        ));
        let stop_poller = stop.drop_guard();
        let sink = batch::Sink {
            ingest: &ingest,
            source: &self.name,
            stream: &self.stream,
            health: &health,
        };
        tracing::info!(
            source = self.name,
            broker = format!("{}:{}", self.broker.host, self.broker.port),
            tls = self.broker.tls,
            user = self.credentials.as_ref().map(|c| c.username.as_str()),
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
            if !sink.store(&checked, &cancel).await? {
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
        let check = ingest.checker(&self.stream);
        let mut checked = Checked::default();
        for m in messages {
            let digest = payload_digest(&m.payload);
            let derived = || format!("mqtt:{}:{digest}", m.topic);
            let event = mapping::to_event_shape(&m.payload, &self.fields, self.ts_format, derived)
                .and_then(|value| check.check(value));
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

/// Up to `max` messages: the first one waited for, then those already received and those
/// arriving within [`GAP`] of the previous one, for at most [`LINGER`]. Empty when the
/// poller ended.
async fn next_batch(messages: &mut mpsc::UnboundedReceiver<Publish>, max: usize) -> Vec<Publish> {
    let Some(first) = messages.recv().await else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < max {
        if let Ok(message) = messages.try_recv() {
            batch.push(message);
            continue;
        }
        let until = deadline.min(tokio::time::Instant::now() + GAP);
        match tokio::time::timeout_at(until, messages.recv()).await {
            Ok(Some(message)) => batch.push(message),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Why the broker did not take the connection, when retrying alone cannot help: it refused
/// the credentials, or the TLS handshake failed.
fn refusal(error: &ConnectionError) -> Option<String> {
    match error {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => Some(
            "the broker refused the credentials (bad user name or password, or not authorized)"
                .to_owned(),
        ),
        ConnectionError::ConnectionRefused(code) => {
            Some(format!("the broker refused the connection: {code:?}"))
        }
        ConnectionError::Tls(error) => {
            // The innermost cause says it all (the layers above repeat it).
            let mut cause: &dyn std::error::Error = error;
            while let Some(next) = cause.source() {
                cause = next;
            }
            Some(format!("TLS: {cause}"))
        }
        _ => None,
    }
}

/// Drives the connection (which also sends the subscriptions and acknowledgements) until
/// `stop`: subscribes on every connection, hands each QoS 1 message to `sender`, and
/// reconnects after [`RECONNECT`] when the broker is unreachable or the connection drops,
/// after [`RECONNECT_REFUSED`] when it refused the source ([`refusal`]: `health` is then
/// `failed` with the reason, until a connection is accepted).
async fn poll(
    mut events: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<rumqttc::SubscribeFilter>,
    sender: mpsc::UnboundedSender<Publish>,
    stop: CancellationToken,
    name: String,
    health: HealthReporter,
) {
    let mut refused = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if refused {
                    refused = false;
                    health.set(Health::Running);
                }
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
                let wait = if let Some(reason) = refusal(&error) {
                    tracing::error!(
                        source = name,
                        error = reason,
                        retry_in = ?RECONNECT_REFUSED,
                        "mqtt source: the broker refused the connection"
                    );
                    refused = true;
                    health.set(Health::Failed(reason));
                    RECONNECT_REFUSED
                } else {
                    tracing::warn!(
                        source = name,
                        error = error_chain(&error),
                        retry_in = ?RECONNECT,
                        "mqtt source: disconnected from the broker; reconnecting"
                    );
                    RECONNECT
                };
                if sleep_or_cancel(wait, &stop).await {
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

    fn broker(host: &str, port: u16, tls: bool) -> Broker {
        Broker {
            host: host.to_owned(),
            port,
            tls,
        }
    }

    #[test]
    fn broker_urls_are_parsed() {
        for (url, expected) in [
            ("mqtt://127.0.0.1:18830", broker("127.0.0.1", 18830, false)),
            ("tcp://broker.local", broker("broker.local", 1883, false)),
            ("mqtt://[::1]:9", broker("::1", 9, false)),
            ("mqtt://[::1]", broker("::1", 1883, false)),
            ("mqtts://broker.local", broker("broker.local", 8883, true)),
            ("ssl://127.0.0.1:18831/", broker("127.0.0.1", 18831, true)),
        ] {
            assert_eq!(broker_of(url).unwrap(), expected, "{url}");
        }
        for bad in [
            "127.0.0.1:1883",
            "https://h:8883",
            "mqtt://",
            "mqtts://",
            "mqtt://h:x",
            "mqtt://h:0",
            "mqtt://user@h",
        ] {
            assert!(broker_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_come_from_the_environment_or_a_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let from_file = Credentials::new("ingest", PasswordFrom::File(&file)).unwrap();
        assert_eq!(from_file.password, "s3cret-from-file");
        let shown = format!("{from_file:?}");
        assert!(
            shown.contains("ingest") && !shown.contains("s3cret"),
            "{shown}"
        );
        // PATH is set in every environment; an unset variable is a clear error.
        let from_env = Credentials::new("ingest", PasswordFrom::Env("PATH")).unwrap();
        assert_eq!(from_env.password, std::env::var("PATH").unwrap());
        let unset = "TRIBUTARY_TEST_UNSET_MQTT_PASSWORD";
        let error = Credentials::new("ingest", PasswordFrom::Env(unset)).unwrap_err();
        assert!(format!("{error:#}").contains(unset), "{error:#}");
        let missing = dir.path().join("missing");
        let error = Credentials::new("ingest", PasswordFrom::File(&missing)).unwrap_err();
        assert!(format!("{error:#}").contains("password_file"), "{error:#}");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = tls_config(Some(&empty)).unwrap_err();
        assert!(
            format!("{error:#}").contains("holds no certificate"),
            "{error:#}"
        );
        let error = tls_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(format!("{error:#}").contains("cannot read"), "{error:#}");
        assert!(tls_config(None).is_ok(), "the Mozilla roots");
    }

    #[test]
    fn the_digest_identifies_the_payload() {
        let digest = payload_digest(b"{}");
        assert_eq!(digest.len(), 32);
        assert_eq!(digest, "44136fa355b3678a1146ad16f7e8649e");
        assert_ne!(payload_digest(b"{ }"), digest);
    }
}
