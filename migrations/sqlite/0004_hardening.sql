-- Hardening: keys bound to the database, one width for key ids, a keyed printer-file MAC, and
-- batches that fail for good with a reason instead of waiting forever.

-- Which key material each key id means in this deployment: a fingerprint (HMAC-SHA256 of a fixed
-- label under the key), never the key. Every process checks its key files against these rows.
CREATE TABLE key_version (
    purpose      TEXT NOT NULL CHECK (purpose IN ('lookup', 'audit')),
    key_id       INTEGER NOT NULL CHECK (key_id BETWEEN 1 AND 32767),
    fingerprint  BLOB NOT NULL CHECK (length(fingerprint) = 32),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    added_at     TEXT NOT NULL,
    activated_at TEXT,
    PRIMARY KEY (purpose, key_id)
);
-- One active key per purpose: new digests and tags use it.
CREATE UNIQUE INDEX key_version_active ON key_version (purpose) WHERE state = 'active';

-- SQLite cannot change a CHECK constraint in place: the batch table is rebuilt with the 'failed'
-- state, the keyed export MAC (old unkeyed hashes dropped: for a one-card file they are a
-- brute-force oracle for its code), the export location and the failure reason.
CREATE TABLE batch_new (
    batch_id         INTEGER PRIMARY KEY,
    retailer_id      INTEGER NOT NULL REFERENCES retailer (retailer_id),
    card_count       INTEGER NOT NULL CHECK (card_count > 0),
    currency         TEXT NOT NULL CHECK (length(currency) = 3),
    value_minor      INTEGER CHECK (value_minor > 0),
    min_minor        INTEGER CHECK (min_minor > 0),
    max_minor        INTEGER,
    region           TEXT NOT NULL CHECK (length(region) = 2),
    expires_at       TEXT,
    first_sequence   INTEGER NOT NULL CHECK (first_sequence > 0),
    lookup_key_id    INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('requested', 'generating', 'completed', 'failed')),
    generated_count  INTEGER NOT NULL DEFAULT 0,
    collisions       INTEGER NOT NULL DEFAULT 0,
    export_bytes     INTEGER NOT NULL DEFAULT 0,
    export_mac       TEXT,
    generation_token TEXT,
    requested_by     TEXT NOT NULL,
    requested_at     TEXT NOT NULL,
    completed_at     TEXT,
    export_location  TEXT,
    failure          TEXT,
    CHECK ((value_minor IS NOT NULL AND min_minor IS NULL AND max_minor IS NULL)
        OR (value_minor IS NULL AND min_minor IS NOT NULL AND max_minor >= min_minor)),
    CHECK (generated_count BETWEEN 0 AND card_count)
);
INSERT INTO batch_new (batch_id, retailer_id, card_count, currency, value_minor, min_minor,
    max_minor, region, expires_at, first_sequence, lookup_key_id, state, generated_count,
    collisions, export_bytes, export_mac, generation_token, requested_by, requested_at,
    completed_at)
SELECT batch_id, retailer_id, card_count, currency, value_minor, min_minor, max_minor, region,
    expires_at, first_sequence, lookup_key_id, state, generated_count, collisions, export_bytes,
    NULL, generation_token, requested_by, requested_at, completed_at
FROM batch;
DROP TABLE batch;
ALTER TABLE batch_new RENAME TO batch;
