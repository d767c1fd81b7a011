//! `benchctl`: the small service chores of `bench/run.sh`.
//!
//! - `prefix`: prints a fresh run prefix (`bench_<12 hex>`).
//! - `free-port`: prints a TCP port of 127.0.0.1 that is free right now.
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
    /// Prints a free TCP port of 127.0.0.1.
    FreePort,
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
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            emit(&serde_json::json!(listener.local_addr()?.port()))
        }
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
