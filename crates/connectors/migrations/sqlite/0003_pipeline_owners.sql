-- Pipeline ownership (src/sqlite/analytics.rs): `claim` bumps a pipeline's generation and
-- reads its checkpoint in one transaction; `commit_checkpoint` writes only if the
-- generation is still the committer's. Both run under `BEGIN IMMEDIATE`, so they serialize
-- on SQLite's write lock. `claimed_at` is INTEGER epoch milliseconds.
CREATE TABLE pipeline_owners (
    pipeline   TEXT    NOT NULL PRIMARY KEY,
    generation INTEGER NOT NULL CHECK (generation > 0),
    claimed_at INTEGER NOT NULL
);
