//! `benchctl`: the small service chores of `bench/run.sh`.
//!
//! - `prefix`: prints a fresh run prefix (`bench_<12 hex>`).
//! - `create-topic --name N --partitions P`: creates a Kafka topic (for the baseline).
//! - `create-db --name N`: creates a PostgreSQL database and prints its URL.
//! - `cleanup --prefix bench_...`: removes every Kafka topic, PostgreSQL and MongoDB
//!   database and Redis key whose name starts with the prefix; prints what it removed.
//!
//! Service addresses come from `TRIBUTARY_KAFKA_BROKERS`, `TRIBUTARY_POSTGRES_URL`,
//! `TRIBUTARY_MONGODB_URL` and `TRIBUTARY_REDIS_URL`.

use clap::{Parser, Subcommand};
use tributary_bench::cleanup::{self, env};
use tributary_bench::emit;

/// Service chores of the benchmark script.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a fresh run prefix.
    Prefix,
    /// Creates a Kafka topic.
    CreateTopic {
        /// The topic.
        #[arg(long)]
        name: String,
        /// Its partitions.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Creates a PostgreSQL database (`[a-z0-9_]+`) and prints its URL.
    CreateDb {
        /// The database.
        #[arg(long)]
        name: String,
    },
    /// Removes everything named with the prefix.
    Cleanup {
        /// Must start with `bench_`.
        #[arg(long)]
        prefix: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Prefix => emit(&serde_json::Value::String(cleanup::run_prefix())),
        Command::CreateTopic { name, partitions } => {
            cleanup::create_topic(&env("TRIBUTARY_KAFKA_BROKERS")?, &name, partitions).await
        }
        Command::CreateDb { name } => {
            let url =
                cleanup::create_postgres_database(&env("TRIBUTARY_POSTGRES_URL")?, &name).await?;
            emit(&serde_json::Value::String(url))
        }
        Command::Cleanup { prefix } => {
            let removed = cleanup::remove_all(&prefix).await?;
            emit(&serde_json::to_value(&removed)?)
        }
    }
}
