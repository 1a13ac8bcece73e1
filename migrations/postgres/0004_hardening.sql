-- Hardening: keys bound to the database, one width for key ids, a keyed printer-file MAC, and
-- batches that fail for good with a reason instead of waiting forever.

-- Which key material each key id means in this deployment: a fingerprint (HMAC-SHA256 of a fixed
-- label under the key), never the key. Every process checks its key files against these rows.
CREATE TABLE key_version (
    purpose      TEXT NOT NULL CHECK (purpose IN ('lookup', 'audit')),
    key_id       SMALLINT NOT NULL CHECK (key_id BETWEEN 1 AND 32767),
    fingerprint  BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    added_at     TIMESTAMPTZ NOT NULL,
    activated_at TIMESTAMPTZ,
    PRIMARY KEY (purpose, key_id)
);
-- One active key per purpose: new digests and tags use it.
CREATE UNIQUE INDEX key_version_active ON key_version (purpose) WHERE state = 'active';

-- Key ids are SMALLINT wherever they are stored.
ALTER TABLE batch ALTER COLUMN lookup_key_id TYPE SMALLINT;
ALTER TABLE audit_record ALTER COLUMN key_id TYPE SMALLINT;
ALTER TABLE audit_seal ALTER COLUMN key_id TYPE SMALLINT;

-- The printer file's hash is keyed from now on: an unkeyed SHA-256 of a one-card file is a
-- brute-force oracle for its code, so the old values are dropped, not kept.
ALTER TABLE batch RENAME COLUMN export_sha256 TO export_mac;
UPDATE batch SET export_mac = NULL;
-- Where the printer file is written (host and directory): only a run there may resume it.
ALTER TABLE batch ADD COLUMN export_location TEXT;
-- Why a batch failed for good; `tender batch restart` clears it.
ALTER TABLE batch ADD COLUMN failure TEXT;
ALTER TABLE batch DROP CONSTRAINT batch_state_check;
ALTER TABLE batch ADD CONSTRAINT batch_state_check
    CHECK (state IN ('requested', 'generating', 'completed', 'failed'));
