-- The outbox: jobs written in the transaction of the change that causes them, handed to the
-- job runner by the relay that runs in every `tender work` process. Payloads hold ids only.
CREATE TABLE outbox (
    outbox_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    -- A relay's lease on the row (SQLite's claim; PostgreSQL relays lock rows instead), in Unix
    -- milliseconds, as on SQLite.
    claim_token      TEXT,
    claimed_until_ms BIGINT,
    relayed_at       TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (outbox_id) WHERE relayed_at IS NULL;

-- A batch recorded while the queue was unavailable had no job yet: its job goes to the outbox.
INSERT INTO outbox (job, payload, created_at)
SELECT 'generate-batch', '{"batch_id":' || batch_id || '}', requested_at
FROM batch WHERE enqueued_at IS NULL ORDER BY batch_id;

-- The outbox replaces the per-batch record of queueing.
DROP INDEX batch_awaiting_enqueue;
ALTER TABLE batch DROP COLUMN enqueued_at;
