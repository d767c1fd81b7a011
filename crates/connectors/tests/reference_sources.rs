//! The `ReferenceSource` adapters against real systems: a lookup table in PostgreSQL (the
//! file adapter's tests are unit tests of `src/file/`).
//!
//! The PostgreSQL tests need `TRIBUTARY_POSTGRES_URL` (`eval "$(bash scripts/services.sh
//! env)"`) and fail when it is missing or unreachable. Each works in a schema of its own,
//! created for it and dropped after it.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tributary_connectors::postgres::PostgresReference;
use tributary_core::ports::ReferenceSource;

/// A fresh schema in the test database, dropped with everything in it by [`Schema::drop`].
struct Schema {
    admin: PgConnection,
    name: String,
    url: String,
}

impl Schema {
    async fn create() -> Self {
        let url = common::service_env("TRIBUTARY_POSTGRES_URL");
        let mut admin = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at TRIBUTARY_POSTGRES_URL is unreachable: {e}"));
        let name = format!("lookup_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        Self { admin, name, url }
    }

    async fn execute(&mut self, sql: &str) {
        sqlx::raw_sql(sql).execute(&mut self.admin).await.unwrap();
    }

    async fn drop(mut self) {
        self.execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
        self.admin.close().await.unwrap();
    }
}

#[tokio::test]
async fn postgres_tables_load_as_json_rows_with_their_types() {
    let mut schema = Schema::create().await;
    let s = schema.name.clone();
    schema
        .execute(&format!(
            "CREATE TABLE {s}.ads (ad_id text PRIMARY KEY, campaign_id bigint, \
             weight double precision, active boolean, note text, tags text[]); \
             INSERT INTO {s}.ads VALUES \
             ('a1', 7, 0.5, true, NULL, ARRAY['x']), \
             ('a2', 8, 2, false, 'it''s \"quoted\"', '{{}}'); \
             CREATE TABLE {s}.\"Odd\" (id int);"
        ))
        .await;
    let source = PostgresReference::new(&schema.url, &format!("{s}.ads")).unwrap();
    // As row_to_json writes them: a double precision 2 is the JSON number 2.
    let rows: BTreeMap<String, serde_json::Value> = source
        .load()
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row["ad_id"].as_str().unwrap().to_owned(), row.into()))
        .collect();
    assert_eq!(
        rows,
        BTreeMap::from([
            (
                "a1".to_owned(),
                json!({"ad_id": "a1", "campaign_id": 7, "weight": 0.5, "active": true, "note": null, "tags": ["x"]})
            ),
            (
                "a2".to_owned(),
                json!({"ad_id": "a2", "campaign_id": 8, "weight": 2, "active": false, "note": "it's \"quoted\"", "tags": []})
            ),
        ])
    );
    // Each load reads the table as it is now.
    schema
        .execute(&format!("DELETE FROM {s}.ads WHERE ad_id = 'a1'"))
        .await;
    assert_eq!(source.load().await.unwrap().len(), 1);
    source.close().await;
    // The name is quoted: its case matters.
    let odd = PostgresReference::new(&schema.url, &format!("{s}.Odd")).unwrap();
    assert!(odd.load().await.unwrap().is_empty());
    odd.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn an_unknown_postgres_table_is_refused() {
    let schema = Schema::create().await;
    for table in [
        format!("{}.nope", schema.name),
        format!("{}.ODD", schema.name),
    ] {
        let source = PostgresReference::new(&schema.url, &table).unwrap();
        common::assert_refused(source.load().await);
        source.close().await;
    }
    schema.drop().await;
}

/// A database that does not answer fails the load, not the construction, and retryably.
#[tokio::test]
async fn a_postgres_table_of_a_down_server_is_unavailable_at_load() {
    let port = common::closed_port();
    let source =
        PostgresReference::new(&format!("postgres://t:t@127.0.0.1:{port}/db"), "ads").unwrap();
    common::assert_unavailable_within(source.load(), Duration::from_secs(15)).await;
}

#[tokio::test]
async fn a_malformed_url_or_table_name_is_refused_at_once() {
    common::assert_refused(PostgresReference::new("not a url", "ads"));
    common::assert_refused(PostgresReference::new(
        "postgres://t:t@127.0.0.1/db",
        "ads\"; DROP TABLE x; --",
    ));
}
