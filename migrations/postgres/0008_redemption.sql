-- Redeeming a code into an account balance: each card's one redemption (also the caller's
-- idempotency record), the guessing limits' counters, and the attempt log support reads.
-- None of them holds a code or a digest.

-- A card's one redemption, kept forever: the serial is the natural key (a card redeems once),
-- and (caller, idem_key) the caller's idempotency key, committed in the same transaction as the
-- card's state change and the credit. A key is recorded only with a success: a refusal leaves
-- it free.
CREATE TABLE redemption (
    serial      BIGINT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES account (account_id),
    caller      TEXT NOT NULL,
    idem_key    TEXT,
    value_minor BIGINT NOT NULL CHECK (value_minor > 0),
    currency    TEXT NOT NULL CHECK (length(currency) = 3),
    transfer_id BIGINT NOT NULL REFERENCES transfer (transfer_id),
    actor       TEXT NOT NULL,
    redeemed_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT redemption_key UNIQUE (caller, idem_key)
);

-- Guessing limits: attempts counted in fixed windows (span_ms long, starting at start_ms, Unix
-- milliseconds) per subject (`account:17`, `caller:cli:alice`). A slot is taken by one
-- conditional upsert (`used = used + 1 WHERE used < limit`), committed before the code is looked
-- up, so parallel attempts never evaluate more codes than the limit allows.
CREATE TABLE redeem_window (
    subject  TEXT NOT NULL,
    span_ms  BIGINT NOT NULL CHECK (span_ms > 0),
    start_ms BIGINT NOT NULL,
    used     BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (subject, span_ms, start_ms)
);

-- Every refused redemption attempt, with its real reason, for the support desk (`tender
-- attempts`); not part of the audit chains. serial is known only once a code matched a card.
CREATE TABLE redeem_attempt (
    attempt_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL,
    caller     TEXT NOT NULL,
    serial     BIGINT,
    outcome    TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX redeem_attempt_by_account ON redeem_attempt (account_id, attempt_id);
CREATE INDEX redeem_attempt_by_serial ON redeem_attempt (serial, attempt_id)
    WHERE serial IS NOT NULL;
