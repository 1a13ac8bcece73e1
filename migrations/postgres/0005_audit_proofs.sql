-- Audit proofs anyone can check: a SHA-256 hash chain beside the HMAC tags, Ed25519-signed seals,
-- and the audit key each chain's next record is tagged under.

-- Each record's SHA-256 over its fields, its tag and its predecessor's hash. Records written
-- before this migration hold zeros until `tender init` computes their hashes.
ALTER TABLE audit_record ADD COLUMN hash BYTEA NOT NULL
    DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000' CHECK (length(hash) = 32);
ALTER TABLE audit_record ALTER COLUMN hash DROP DEFAULT;

-- The head row caches the newest hash for appenders, and the audit key the chain's next record
-- is tagged under: rotation sets it under the head locks, so no record after a rotation is
-- tagged under the retired key. Neither is evidence: the verifier never reads this table.
ALTER TABLE audit_chain_head ADD COLUMN hash BYTEA NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000';
ALTER TABLE audit_chain_head ALTER COLUMN hash DROP DEFAULT;
ALTER TABLE audit_chain_head ADD COLUMN key_id SMALLINT;
UPDATE audit_chain_head SET key_id =
    (SELECT key_id FROM key_version WHERE purpose = 'audit' AND state = 'active');

-- The verifier finds the audit key rotations first, to know each key's time in office.
CREATE INDEX audit_record_key_activated ON audit_record (chain, seq)
    WHERE action = 'key.activated';

-- Seals tagged under the (symmetric) audit key proved nothing to whoever held it; they stay,
-- unchecked, for the record. Signed seals replace them.
ALTER TABLE audit_seal RENAME TO audit_seal_hmac;
CREATE TABLE audit_seal (
    seal_id         BIGINT PRIMARY KEY CHECK (seal_id > 0),
    sealed_at       TIMESTAMPTZ NOT NULL,
    -- Every chain's record count and newest hash: chain:seq:hexhash joined by ';'.
    heads           TEXT NOT NULL,
    -- The seal public key's fingerprint; the key itself is never read from the database.
    key_fingerprint BYTEA NOT NULL CHECK (length(key_fingerprint) = 32),
    hash            BYTEA NOT NULL CHECK (length(hash) = 32),
    signature       BYTEA NOT NULL CHECK (length(signature) = 64)
);
