-- The analytics port on PostgreSQL: window results and pipeline checkpoints, written
-- together in one transaction by `PostgresStore::commit_checkpoint` (src/postgres/).

-- One row per (pipeline, window start, key), upserted at each checkpoint until the window
-- is closed. `key` uses the "C" collation so results order bytewise, exactly as in SQLite
-- and in Rust, whatever the database's locale.
CREATE TABLE window_results (
    pipeline     text             NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    key          text COLLATE "C" NOT NULL,
    count        bigint           NOT NULL CHECK (count >= 0),
    closed       boolean          NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, window_start, key)
);

-- The primary key serves range queries ordered by (window_start, key); this index serves
-- the same queries filtered on one key.
CREATE INDEX window_results_pipeline_key_start ON window_results (pipeline, key, window_start);

-- One row per checkpointed pipeline (or task): the epoch fences zombie writers.
-- `watermark` is epoch milliseconds (bigint, since the watermark before any event is
-- i64::MIN, outside timestamptz's range).
CREATE TABLE checkpoints (
    pipeline     text        PRIMARY KEY,
    epoch        bigint      NOT NULL CHECK (epoch >= 0),
    offsets      jsonb       NOT NULL,
    state        jsonb       NOT NULL,
    watermark    bigint      NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
