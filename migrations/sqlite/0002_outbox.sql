-- The outbox: jobs written in the transaction of the change that causes them, handed to the
-- job runner by the relay that runs in every `tender work` process. Payloads hold ids only.
CREATE TABLE outbox (
    outbox_id        INTEGER PRIMARY KEY,
    job              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    -- A relay's lease on the row: its token, and until when, in Unix milliseconds (an integer,
    -- because SQLite's timestamp text does not sort as time does).
    claim_token      TEXT,
    claimed_until_ms INTEGER,
    relayed_at       TEXT
);
CREATE INDEX outbox_pending ON outbox (outbox_id) WHERE relayed_at IS NULL;

-- A batch recorded while the queue was unavailable had no job yet: its job goes to the outbox.
INSERT INTO outbox (job, payload, created_at)
SELECT 'generate-batch', '{"batch_id":' || batch_id || '}', requested_at
FROM batch WHERE enqueued_at IS NULL ORDER BY batch_id;

-- The outbox replaces the per-batch record of queueing.
DROP INDEX batch_awaiting_enqueue;
ALTER TABLE batch DROP COLUMN enqueued_at;
