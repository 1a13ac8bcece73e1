-- Issuance: retailers, card batches, cards, and the tamper-evident audit trail.
-- Amounts rest as integer minor units beside an ISO 4217 code; no column holds a code in plaintext.

-- A retailer sells and activates cards; settlement later pays it the amounts due less commission.
CREATE TABLE retailer (
    retailer_id   INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    commission_bp INTEGER NOT NULL CHECK (commission_bp BETWEEN 0 AND 10000),
    created_at    TEXT NOT NULL
);

-- One row: the next unreserved serial sequence number. Reserving a range is an UPDATE of this row,
-- so concurrent batch requests get disjoint, contiguous ranges.
CREATE TABLE serial_counter (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    next_sequence INTEGER NOT NULL CHECK (next_sequence > 0)
);
INSERT INTO serial_counter (singleton, next_sequence) VALUES (1, 1);

CREATE TABLE batch (
    batch_id         INTEGER PRIMARY KEY,
    retailer_id      INTEGER NOT NULL REFERENCES retailer (retailer_id),
    card_count       INTEGER NOT NULL CHECK (card_count > 0),
    currency         TEXT NOT NULL CHECK (length(currency) = 3),
    -- Fixed-value batches carry value_minor; variable-value batches carry the range set at activation.
    value_minor      INTEGER CHECK (value_minor > 0),
    min_minor        INTEGER CHECK (min_minor > 0),
    max_minor        INTEGER,
    region           TEXT NOT NULL CHECK (length(region) = 2),
    expires_at       TEXT,
    first_sequence   INTEGER NOT NULL CHECK (first_sequence > 0),
    lookup_key_id    INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('requested', 'generating', 'completed')),
    generated_count  INTEGER NOT NULL DEFAULT 0,
    collisions       INTEGER NOT NULL DEFAULT 0,
    -- Length of the printer file covered by committed chunks: a resumed run truncates back to it.
    export_bytes     INTEGER NOT NULL DEFAULT 0,
    export_sha256    TEXT,
    -- Set by each generation run; a chunk commits only under the token of the run that wrote it.
    generation_token TEXT,
    requested_by     TEXT NOT NULL,
    requested_at     TEXT NOT NULL,
    enqueued_at      TEXT,
    completed_at     TEXT,
    CHECK ((value_minor IS NOT NULL AND min_minor IS NULL AND max_minor IS NULL)
        OR (value_minor IS NULL AND min_minor IS NOT NULL AND max_minor >= min_minor)),
    CHECK (generated_count BETWEEN 0 AND card_count)
);
CREATE INDEX batch_awaiting_enqueue ON batch (batch_id) WHERE enqueued_at IS NULL;

-- One row per card ever issued. The serial sequence number is the key; the code exists here only
-- as its keyed digest, unique across every card ever issued. No foreign key to batch: a per-row
-- referential check would slow the bulk load, and only the generation job writes this table.
CREATE TABLE card (
    serial        INTEGER PRIMARY KEY,
    batch_id      INTEGER NOT NULL,
    lookup_key_id INTEGER NOT NULL,
    state         INTEGER NOT NULL,
    digest        BLOB NOT NULL,
    CONSTRAINT card_digest_unique UNIQUE (digest)
);

-- Audit trail: independent HMAC chains, so unrelated operations never wait on one chain head.
CREATE TABLE audit_record (
    chain       INTEGER NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    recorded_at TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    key_id      INTEGER NOT NULL,
    tag         BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- The head of each chain: appending updates this row inside the writing transaction.
CREATE TABLE audit_chain_head (
    chain INTEGER PRIMARY KEY,
    seq   INTEGER NOT NULL,
    tag   BLOB NOT NULL
);
WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < 15)
INSERT INTO audit_chain_head (chain, seq, tag) SELECT n, 0, zeroblob(32) FROM c;

-- A seal records every chain's head under the audit key, itself chained to the previous seal.
CREATE TABLE audit_seal (
    seal_id   INTEGER PRIMARY KEY CHECK (seal_id > 0),
    sealed_at TEXT NOT NULL,
    heads     TEXT NOT NULL,
    key_id    INTEGER NOT NULL,
    tag       BLOB NOT NULL
);
