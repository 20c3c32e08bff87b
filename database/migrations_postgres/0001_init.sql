-- PostgreSQL twin of database/migrations/0001_init.sql: the same tables, columns, keys,
-- checks, defaults and indexes (tests/test_schema_parity.py compares the two schemas).
-- Types: TEXT stays TEXT (ids, ISO-8601 UTC timestamps, JSON), so values compare as they do
-- on SQLite; INTEGER is BIGINT (SQLite's integers are 64-bit), booleans stay 0/1 integers;
-- REAL is DOUBLE PRECISION.

-- SQLite's json_valid(), for the CHECKs on JSON columns: a bad document is refused by a CHECK
-- (an integrity error, as on SQLite), not by a cast error.
CREATE OR REPLACE FUNCTION json_valid(document TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    PERFORM document::json;
    RETURN TRUE;
EXCEPTION WHEN invalid_text_representation OR invalid_parameter_value
    OR untranslatable_character THEN
    RETURN FALSE;
END
$$;

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    label TEXT,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE INDEX idx_api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE channel_configurations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_type TEXT NOT NULL CHECK (channel_type IN ('phone', 'sms', 'email', 'whatsapp')),
    enabled BIGINT NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    settings TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    config_encrypted TEXT,
    key_id TEXT,
    last_error TEXT,
    last_error_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant_id, channel_type)
);

CREATE INDEX idx_channel_configurations_key ON channel_configurations (key_id);

CREATE TABLE tenant_numbers (
    e164 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('forwarding', 'dedicated')),
    created_at TEXT NOT NULL
);

CREATE INDEX idx_tenant_numbers_tenant ON tenant_numbers (tenant_id, kind);
