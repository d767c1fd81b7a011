-- API keys issued through the admin API (tributary_core::ports::KeyStore): the public id,
-- the SHA-256 of the secret (never the secret), the scopes as one space-separated string
-- ("ingest read admin"), the tenant, and the times. A revoked key keeps its row, with
-- `revoked_at` set; listing reads a tenant's keys newest first.
CREATE TABLE api_keys (
    id          text        PRIMARY KEY,
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text        NOT NULL,
    tenant      text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at DESC, id DESC);
