-- The HTTP API's idempotency records: one per (client, Idempotency-Key), so a value-moving
-- request retried under its key gets the first answer instead of running again.

-- client_key_id is the public key id of the API key that sent the request: keys are scoped per
-- client, so two clients' equal keys never meet. idem_key is the header's value (1 to 128
-- printable ASCII characters, service `IDEMPOTENCY_KEY_MAX_CHARS`). fingerprint is
-- HMAC-SHA256 of the request's method, path and body under a key derived from lookup key
-- mac_key_id for this use alone (label "tender idempotency v1"), so a retry with another body
-- is told apart without the body (which may hold a gift card code) ever being stored.
-- claim_token names the request that holds an in-flight claim, so only it completes or
-- releases it, and a takeover (the claim older than the request timeout) is one guarded
-- update. status and body are the stored answer once done (JSON text; responses never carry
-- a code). created_ms and started_ms are Unix milliseconds: purges compare the first, the
-- in-flight bound the second.
CREATE TABLE idempotency_record (
    record_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_key_id TEXT NOT NULL REFERENCES api_client (key_id),
    idem_key      TEXT NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 128),
    mac_key_id    SMALLINT NOT NULL,
    fingerprint   BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    state         TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    claim_token   TEXT NOT NULL,
    status        INTEGER CHECK (status BETWEEN 100 AND 599),
    body          TEXT,
    created_ms    BIGINT NOT NULL,
    started_ms    BIGINT NOT NULL,
    UNIQUE (client_key_id, idem_key),
    CHECK ((state = 'done') = (status IS NOT NULL AND body IS NOT NULL))
);

-- Purges find old records by age, in bounded batches.
CREATE INDEX idempotency_record_created ON idempotency_record (created_ms);
