//! `tributary keys`: the operator's way to issue, list and revoke API keys of any tenant,
//! straight in the key store the config names (the analytics database).
//!
//! `POST /v1/keys` issues keys only in the caller's own tenant, so a new tenant's first key
//! comes from here (or from a JWT carrying a tenant claim). Whoever runs this command holds
//! the database's credentials, so it needs no API key. Keys are minted exactly as the admin
//! API mints them ([`NewKey`]) and shown once; only the hash of their secret is stored.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tributary_core::Timestamp;
use tributary_core::ports::{DEFAULT_TENANT, KeyStore, Scope, StoredKey, scopes_to_string};
use tributary_gateway::NewKey;

use crate::config::Config;

/// `tributary keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The config file (TOML) naming the analytics store, where keys are kept.
    #[arg(long, short)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// What to do with keys.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issues a key and prints it once.
    Create {
        /// The tenant the key belongs to.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// What the key may do (ingest, read, admin); repeat or separate with commas.
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
        /// When it stops being accepted (RFC 3339).
        #[arg(long, value_parser = rfc3339)]
        expires_at: Option<Timestamp>,
        /// A description for people.
        #[arg(long)]
        description: Option<String>,
    },
    /// Lists a tenant's keys (never their secrets).
    List {
        /// The tenant.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
    },
    /// Revokes a key by its id.
    Revoke {
        /// The key's id (the part after `trb_` and before the secret).
        id: String,
    },
}

fn rfc3339(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(str::to_owned)
}

/// Runs `tributary keys`, printing to stdout.
///
/// # Errors
/// When the store cannot be reached, the arguments are invalid, or the id is unknown.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let config = Config::load(Some(&args.config))?;
    let store: Arc<dyn KeyStore> = tributary_connectors::keys::connect(&config.analytics)
        .await
        .context("opening the key store")?;
    let now = Timestamp::now();
    let mut out = std::io::stdout().lock();
    match args.command {
        KeysCommand::Create {
            tenant,
            scopes,
            expires_at,
            description,
        } => {
            let tenant = tenant.trim().to_owned();
            anyhow::ensure!(!tenant.is_empty(), "--tenant must not be blank");
            if let Some(at) = expires_at {
                anyhow::ensure!(at > now, "--expires-at must be in the future");
            }
            let minted = NewKey::generate();
            let stored = StoredKey {
                id: minted.id.clone(),
                secret_hash: minted.secret_hash,
                scopes: scopes.into_iter().collect::<BTreeSet<_>>(),
                tenant,
                description: description
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty()),
                created_at: now,
                expires_at,
                revoked_at: None,
            };
            store.create(&stored).await.context("storing the key")?;
            writeln!(out, "{}", minted.key)?;
            eprintln!(
                "Key {} of tenant {:?} ({}) created. It is shown once: keep it now.",
                stored.id,
                stored.tenant,
                scopes_to_string(&stored.scopes)
            );
        }
        KeysCommand::List { tenant } => {
            for key in store.list(&tenant).await.context("listing keys")? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.is_active(now) {
                    "active"
                } else {
                    "expired"
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    key.id,
                    state,
                    scopes_to_string(&key.scopes),
                    key.created_at,
                    key.description.unwrap_or_default()
                )?;
            }
        }
        KeysCommand::Revoke { id } => {
            let found = store.revoke(&id, now).await.context("revoking the key")?;
            anyhow::ensure!(found, "no key {id:?}");
            eprintln!(
                "Key {id} revoked (other nodes may accept it for up to [auth] key_cache_ttl)."
            );
        }
    }
    out.flush()?;
    Ok(())
}
