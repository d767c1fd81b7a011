//! The [`StreamTopics`] port on Kafka: [`KafkaTopics`], through the admin client (its
//! contract is stated in `crate::streams`, with the embedded log's).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tributary_core::StreamName;
use tributary_core::ports::{
    Log, PortError, StreamTopics, TopicCapabilities, TopicError, TopicSpec,
};

use super::KafkaConfig;

/// The system name of Kafka's errors.
const KAFKA: &str = "kafka";

/// How long an admin operation may take on the brokers.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `max.message.bytes` of the topics, as the Kafka log creates them (`kafka/admin.rs`):
/// sent again with every AlterConfigs, which resets what it does not name.
const TOPIC_MAX_MESSAGE_BYTES: &str = "1048588";

/// Kafka topics of streams, through the admin client.
pub struct KafkaTopics {
    admin: AdminClient<DefaultClientContext>,
    config: KafkaConfig,
    log: Arc<dyn Log>,
}

impl std::fmt::Debug for KafkaTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTopics")
            .field("brokers", &self.config.brokers)
            .field("topic_prefix", &self.config.topic_prefix)
            .finish_non_exhaustive()
    }
}

impl KafkaTopics {
    /// An admin client of the cluster `config` names; `log` is the Kafka log over it,
    /// whose partition counts are refreshed after changes.
    ///
    /// # Errors
    /// When the client cannot be created (an invalid config).
    pub fn new(config: &KafkaConfig, log: Arc<dyn Log>) -> Result<Self, PortError> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", &config.client_id)
            .create()
            .map_err(|e| PortError::refused(KAFKA, e))?;
        Ok(Self {
            admin,
            config: config.clone(),
            log,
        })
    }

    fn topic(&self, name: &StreamName) -> String {
        format!("{}{}", self.config.topic_prefix, name)
    }

    fn options() -> AdminOptions {
        AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT))
    }
}

/// A failed admin operation's code as a [`TopicError`]: the caller's fault when the brokers
/// refused the settings.
fn admin_error(code: RDKafkaErrorCode) -> TopicError {
    use RDKafkaErrorCode as C;
    match code {
        C::InvalidReplicationFactor
        | C::InvalidPartitions
        | C::InvalidConfig
        | C::PolicyViolation
        | C::InvalidRequest
        | C::InvalidReplicaAssignment => TopicError::Invalid(format!("Kafka refused: {code}")),
        other => TopicError::Port(PortError::unavailable(KAFKA, KafkaError::AdminOp(other))),
    }
}

fn kafka_failure(error: KafkaError) -> TopicError {
    match error.rdkafka_error_code() {
        Some(code) if !matches!(admin_error(code), TopicError::Port(_)) => admin_error(code),
        _ => TopicError::Port(PortError::unavailable(KAFKA, error)),
    }
}

#[async_trait]
impl StreamTopics for KafkaTopics {
    fn capabilities(&self) -> TopicCapabilities {
        TopicCapabilities {
            add_partitions: true,
            retention: true,
            replication: true,
            delete_records: true,
        }
    }

    fn default_replication_factor(&self) -> Option<i32> {
        Some(self.config.replication_factor)
    }

    async fn create(&self, spec: &TopicSpec) -> Result<u32, TopicError> {
        let topic = self.topic(&spec.name);
        let partitions = i32::try_from(spec.partitions.max(1))
            .map_err(|_| TopicError::Invalid("too many partitions".to_owned()))?;
        let replication = spec
            .replication_factor
            .unwrap_or(self.config.replication_factor);
        let retention = spec.retention_ms.map(|ms| ms.to_string());
        let mut new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(replication))
            .set("max.message.bytes", TOPIC_MAX_MESSAGE_BYTES);
        if let Some(retention) = &retention {
            new_topic = new_topic.set("retention.ms", retention);
        }
        let results = self
            .admin
            .create_topics([&new_topic], &Self::options())
            .await
            .map_err(kafka_failure)?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(
                    topic = %topic,
                    partitions,
                    replication,
                    retention_ms = spec.retention_ms,
                    "kafka topic created"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(admin_error(code)),
            }
        }
        // Waits until every partition has a leader, and caches the count in the log.
        Ok(self.log.ensure_stream(&spec.name, spec.partitions).await?)
    }

    async fn alter(&self, spec: &TopicSpec) -> Result<(), TopicError> {
        let topic = self.topic(&spec.name);
        let retention = spec.retention_ms.map(|ms| ms.to_string());
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&topic))
            .set("max.message.bytes", TOPIC_MAX_MESSAGE_BYTES);
        if let Some(retention) = &retention {
            alter = alter.set("retention.ms", retention);
        }
        for result in self
            .admin
            .alter_configs([&alter], &Self::options())
            .await
            .map_err(kafka_failure)?
        {
            if let Err((_, code)) = result {
                return Err(admin_error(code));
            }
        }
        let current = self.log.partitions(&spec.name).await?;
        if spec.partitions > current {
            let total = usize::try_from(spec.partitions)
                .map_err(|_| TopicError::Invalid("too many partitions".to_owned()))?;
            let grow = NewPartitions::new(&topic, total);
            for result in self
                .admin
                .create_partitions([&grow], &Self::options())
                .await
                .map_err(kafka_failure)?
            {
                if let Err((_, code)) = result {
                    return Err(admin_error(code));
                }
            }
            // The log's cached count follows once the metadata shows the new partitions.
            for _ in 0..50 {
                if self.log.partitions(&spec.name).await? >= spec.partitions {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::info!(topic = %topic, partitions = spec.partitions, "kafka partitions added");
        }
        Ok(())
    }

    async fn delete(&self, name: &StreamName) -> Result<(), TopicError> {
        let topic = self.topic(name);
        for result in self
            .admin
            .delete_topics(&[&topic], &Self::options())
            .await
            .map_err(kafka_failure)?
        {
            match result {
                Ok(_) => tracing::info!(topic = %topic, "kafka topic deleted"),
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((_, code)) => return Err(admin_error(code)),
            }
        }
        Ok(())
    }
}
