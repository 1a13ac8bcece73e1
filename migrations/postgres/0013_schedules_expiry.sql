-- Schedules and expiry.
--
-- job_definition: the definition of each scheduled job in force, as its hex SHA-256. A runner
-- records its own at start (a start adopts the definition it read); a runner whose definition
-- is not the one in force refuses to claim a period and says why.
CREATE TABLE job_definition (
    job            TEXT PRIMARY KEY,
    definition_sha TEXT NOT NULL CHECK (length(definition_sha) = 64),
    adopted_ms     BIGINT NOT NULL,
    adopted_by     TEXT NOT NULL
);

-- job_run: one row per scheduled job and period, claimed by the first runner to insert it.
-- period_ms is the period's instant (its tick, resolved in the schedule's time zone); as_of_ms
-- the instant the run acts as of (the tick for catch_up = "each", the claim's time for
-- "latest"). status: running (a runner holds it until lease_until_ms, renewing the lease while
-- it works), succeeded, failed (retried from retry_ms while attempts < the definition's
-- max_attempts). started_ms is the current attempt's start; totals the run's result as JSON.
CREATE TABLE job_run (
    run_id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job            TEXT NOT NULL,
    period_ms      BIGINT NOT NULL,
    as_of_ms       BIGINT NOT NULL,
    definition_sha TEXT NOT NULL CHECK (length(definition_sha) = 64),
    status         TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts       INTEGER NOT NULL CHECK (attempts > 0),
    runner         TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    retry_ms       BIGINT,
    started_ms     BIGINT NOT NULL,
    finished_ms    BIGINT,
    totals         TEXT,
    error          TEXT,
    CONSTRAINT job_run_period UNIQUE (job, period_ms)
);

-- The state (ISO 3166-2) of the purchaser's address where the point of sale captured it: the
-- first priority rule for which state's unclaimed-property law takes an expired card's funds.
ALTER TABLE card_activation ADD COLUMN purchaser_state TEXT;

-- Expiry takes due cards earliest first, then by serial, a chunk at a time: with the serial in
-- the index, each chunk reads just its rows in order instead of sorting every due card.
DROP INDEX card_funds_expiry;
CREATE INDEX card_funds_expiry ON card (funds_expire_ms, serial) WHERE state = 1;

-- Card legs (activations, redemptions, expiries: the bulk of all entries) are found by serial,
-- never by their `card:{serial}` name; the name index keeps the other accounts only.
DROP INDEX entry_ledger_account;
CREATE INDEX entry_ledger_account ON entry (ledger_account) WHERE serial IS NULL;
