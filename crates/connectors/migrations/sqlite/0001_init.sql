-- The embedded store (src/sqlite/): the analytics port (window results and checkpoints,
-- written together in one transaction) and the document port (raw events).
-- Timestamps are INTEGER epoch milliseconds; JSON is TEXT. Tables holding JSON of any size
-- keep their rowid (WITHOUT ROWID suits small rows only).

CREATE TABLE window_results (
    pipeline     TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    key          TEXT    NOT NULL,
    count        INTEGER NOT NULL CHECK (count >= 0),
    closed       INTEGER NOT NULL CHECK (closed IN (0, 1)),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (pipeline, window_start, key)
) WITHOUT ROWID;

CREATE INDEX window_results_pipeline_key_start ON window_results (pipeline, key, window_start);

CREATE TABLE checkpoints (
    pipeline     TEXT    NOT NULL PRIMARY KEY,
    epoch        INTEGER NOT NULL CHECK (epoch >= 0),
    offsets      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    watermark    INTEGER NOT NULL,
    committed_at INTEGER NOT NULL
);

-- First version wins: `put_events` inserts with ON CONFLICT DO NOTHING.
CREATE TABLE events (
    stream  TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    ts      INTEGER NOT NULL,
    key     TEXT,
    payload TEXT    NOT NULL,
    PRIMARY KEY (stream, id)
);

-- Serves `recent_events`: newest first, ties broken by id.
CREATE INDEX events_stream_ts_id ON events (stream, ts DESC, id DESC);
