-- API keys issued through the admin API (tributary_core::ports::KeyStore): the public id,
-- the SHA-256 of the secret (never the secret), the scopes as one space-separated string
-- ("ingest read admin"), the tenant, and the times as epoch milliseconds. A revoked key
-- keeps its row, with `revoked_at` set; listing reads a tenant's keys newest first.
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    scopes      TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at DESC, id DESC);
