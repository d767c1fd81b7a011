-- The streams' definitions (tributary_core::ports::StreamStore): those of the config file
-- (origin 'config', written again at every start) and those created through the admin API
-- (origin 'api'). A name is unique across tenants: it names the stream's topic in the log.
-- `replication_factor` is NULL on a log without replicas, `retention_ms` NULL for the log's
-- default; `schema` is the JSON Schema of the events' payloads, NULL for none.
CREATE TABLE streams (
    name               text        PRIMARY KEY,
    tenant             text        NOT NULL,
    partitions         bigint      NOT NULL CHECK (partitions > 0),
    replication_factor bigint,
    retention_ms       bigint,
    schema             text,
    description        text,
    origin             text        NOT NULL CHECK (origin IN ('config', 'api')),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
