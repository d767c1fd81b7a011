//! The SQL stores' schemas, embedded in the binary: each migration file of `migrations/`
//! (`<version>_<description>.sql`), read by sqlx's migrator as `sqlx migrate` reads that
//! folder: the same versions, descriptions and checksums (SHA-384 of the SQL), so a database
//! migrated by an earlier build stays valid.
//!
//! They are listed here rather than embedded by `sqlx::migrate!`, whose proc-macro would
//! compile sqlx's PostgreSQL and SQLite drivers a second time for the build host. A test
//! checks the lists against the folders.

use std::borrow::Cow;
use std::ops::Deref;

use futures::future::BoxFuture;
use sqlx::Acquire;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One migration file: its name without `.sql`, and its SQL.
type File = (&'static str, &'static str);

/// `migration!("postgres", "0001_analytics")`: the file `migrations/postgres/0001_analytics.sql`.
macro_rules! migration {
    ($dir:literal, $name:literal) => {
        (
            $name,
            include_str!(concat!("../migrations/", $dir, "/", $name, ".sql")),
        )
    };
}

/// PostgreSQL's schema, `migrations/postgres/`.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Embedded = Embedded(&[
    migration!("postgres", "0001_analytics"),
    migration!("postgres", "0002_pipeline_owners"),
    migration!("postgres", "0003_checkpoint_chunks"),
    migration!("postgres", "0004_checkpoint_state"),
    migration!("postgres", "0005_api_keys"),
    migration!("postgres", "0006_streams"),
]);

/// SQLite's schema, `migrations/sqlite/`.
pub(crate) const SQLITE: Embedded = Embedded(&[
    migration!("sqlite", "0001_init"),
    migration!("sqlite", "0002_dead_letters"),
    migration!("sqlite", "0003_pipeline_owners"),
    migration!("sqlite", "0004_checkpoint_chunks"),
    migration!("sqlite", "0005_checkpoint_state"),
    migration!("sqlite", "0006_api_keys"),
    migration!("sqlite", "0007_streams"),
]);

/// The migration files of one database, in version order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(&'static [File]);

impl Embedded {
    /// Brings the database of `pool` up to date, as sqlx's migrator does.
    pub(crate) async fn run<'a, A>(self, pool: A) -> Result<(), MigrateError>
    where
        A: Acquire<'a>,
        <A::Connection as Deref>::Target: Migrate,
    {
        Migrator::new(self).await?.run(pool).await
    }

    /// Each file as sqlx reads it from a folder (`sqlx_core::migrate::resolve_blocking`):
    /// the version before the first `_`, the rest as the description with `_` as spaces, a
    /// plain (not reversible) migration, in a transaction unless its SQL starts with
    /// `-- no-transaction`.
    fn migrations(self) -> Result<Vec<Migration>, BoxDynError> {
        self.0
            .iter()
            .map(|(name, sql)| {
                let (version, description) = name
                    .split_once('_')
                    .ok_or_else(|| format!("migration {name}: no `<version>_` prefix"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|e| format!("migration {name}: version: {e}"))?;
                Ok(Migration::new(
                    version,
                    Cow::Owned(description.replace('_', " ")),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    sql.starts_with("-- no-transaction"),
                ))
            })
            .collect()
    }
}

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { self.migrations() })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every file of `migrations/{dir}`, in name order, is listed, with its SQL, and sqlx
    /// reads the list as it reads the folder.
    async fn lists_the_folder(dir: &str, embedded: Embedded) {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        files.sort();
        let listed: Vec<(String, String)> = embedded
            .0
            .iter()
            .map(|(name, sql)| ((*name).to_owned(), (*sql).to_owned()))
            .collect();
        assert_eq!(listed, files, "migrations/{dir} and its list differ");

        let from_folder = Migrator::new(folder.as_path()).await.unwrap();
        let from_list = Migrator::new(embedded).await.unwrap();
        let described = |m: &Migrator| {
            m.iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.checksum.to_vec(),
                        m.no_tx,
                        m.migration_type,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(described(&from_list), described(&from_folder));
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn postgres_lists_its_folder() {
        lists_the_folder("postgres", POSTGRES).await;
    }

    #[tokio::test]
    async fn sqlite_lists_its_folder() {
        lists_the_folder("sqlite", SQLITE).await;
    }
}
