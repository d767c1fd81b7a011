//! `tributary health`: asks a running node's `/healthz` and exits 0 when it answers 200,
//! non-zero otherwise (no answer within the timeout, another status). The container
//! image's `HEALTHCHECK` runs it: the distroless runtime image has no shell and no curl.

use std::time::Duration;

use anyhow::Context;

/// Options of `tributary health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// Asks `args.url` once.
///
/// # Errors
/// When the node does not answer 200 within the timeout.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("{} did not answer", args.url))?;
    let status = response.status();
    anyhow::ensure!(status == 200, "{} answered {status}", args.url);
    Ok(())
}
