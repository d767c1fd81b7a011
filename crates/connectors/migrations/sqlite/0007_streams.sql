-- The streams' definitions (tributary_core::ports::StreamStore): those of the config file
-- (origin 'config', written again at every start) and those created through the admin API
-- (origin 'api'). A name is unique across tenants: it names the stream in the log.
-- `replication_factor` is NULL on a log without replicas, `retention_ms` NULL for the log's
-- default; `schema` is the JSON Schema of the events' payloads, NULL for none; times are
-- epoch milliseconds.
CREATE TABLE streams (
    name               TEXT    PRIMARY KEY,
    tenant             TEXT    NOT NULL,
    partitions         INTEGER NOT NULL CHECK (partitions > 0),
    replication_factor INTEGER,
    retention_ms       INTEGER,
    schema             TEXT,
    description        TEXT,
    origin             TEXT    NOT NULL CHECK (origin IN ('config', 'api')),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
