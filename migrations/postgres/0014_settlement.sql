-- Settlement: one closed business day per row, its report files, the closings the next day
-- opens from, and the payments retailers made against what they owe.

-- A closed business day (business_date, YYYY-MM-DD in the business time zone): the entries
-- recorded from start_ms to cutoff_ms, settled once. manifest is the signed list of the
-- files (their names, sizes and SHA-256), signature its Ed25519 signature under the seal key;
-- seal_id the audit seal taken after the day closed (NULL until it is).
CREATE TABLE settlement (
    business_date TEXT PRIMARY KEY CHECK (length(business_date) = 10),
    time_zone     TEXT NOT NULL,
    start_ms      BIGINT NOT NULL,
    cutoff_ms     BIGINT NOT NULL CHECK (cutoff_ms > start_ms),
    manifest      BYTEA NOT NULL,
    signature     BYTEA NOT NULL CHECK (length(signature) = 64),
    seal_id       BIGINT,
    settled_by    TEXT NOT NULL,
    settled_at    TEXT NOT NULL
);

-- The day's report files, byte for byte, so any host returns the same bytes.
CREATE TABLE settlement_file (
    business_date TEXT NOT NULL REFERENCES settlement (business_date),
    name          TEXT NOT NULL,
    content       BYTEA NOT NULL,
    sha256        TEXT NOT NULL CHECK (length(sha256) = 64),
    PRIMARY KEY (business_date, name)
);

-- The outstanding liability (card and customer balances) per currency at the day's cut-off:
-- the next day's opening. The memo lines (trade-in valuations still to credit, claw-backs
-- customers still owe) are as the run found them: no history holds them at the cut-off, so a
-- rerun reads them here to reproduce its files.
CREATE TABLE settlement_liability (
    business_date TEXT NOT NULL REFERENCES settlement (business_date),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    closing_minor BIGINT NOT NULL,
    pending_minor BIGINT NOT NULL,
    owed_minor    BIGINT NOT NULL,
    PRIMARY KEY (business_date, currency)
);

-- Each retailer's receivable per currency at the cut-off, and what the day added to it (net
-- due): the next day's opening, and the history its ageing is read from.
CREATE TABLE settlement_receivable (
    business_date TEXT NOT NULL REFERENCES settlement (business_date),
    retailer_id   BIGINT NOT NULL REFERENCES retailer (retailer_id),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    net_due_minor BIGINT NOT NULL,
    closing_minor BIGINT NOT NULL,
    PRIMARY KEY (retailer_id, currency, business_date)
);

-- A payment a retailer made, by the retailer's own reference (its idempotency key).
CREATE TABLE retailer_payment (
    retailer_id  BIGINT NOT NULL REFERENCES retailer (retailer_id),
    reference    TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     TEXT NOT NULL CHECK (length(currency) = 3),
    transfer_id  BIGINT NOT NULL REFERENCES transfer (transfer_id),
    recorded_by  TEXT NOT NULL,
    PRIMARY KEY (retailer_id, reference)
);
CREATE INDEX retailer_payment_transfer ON retailer_payment (transfer_id);

-- Each entry carries what settlement groups it by, copied from its transfer when it is written
-- (neither changes after): recorded_ms, the instant its transfer was recorded, and book, its
-- `{currency}:{kind}:{account}` where account is `card`, `customer` or a system account's
-- name. A day's aggregate is then one indexed range of one table grouped by one key, not a
-- join of every entry to its transfer: the difference between a fifth and most of a bare
-- GROUP BY's speed. An entry without them (none that tender writes) would be left out of
-- every day, and the day would then fail to reconcile, loudly.
ALTER TABLE entry ADD COLUMN recorded_ms BIGINT;
ALTER TABLE entry ADD COLUMN book TEXT;
UPDATE entry SET
    recorded_ms = (SELECT t.recorded_ms FROM transfer t WHERE t.transfer_id = entry.transfer_id),
    book = (SELECT t.currency || ':' || t.kind || ':' ||
                CASE WHEN entry.serial IS NOT NULL THEN 'card'
                     WHEN entry.account_id IS NOT NULL THEN 'customer'
                     ELSE entry.ledger_account END
            FROM transfer t WHERE t.transfer_id = entry.transfer_id);
CREATE INDEX entry_recorded ON entry (recorded_ms);

-- A day's sales and voids, found from its transfers.
CREATE INDEX card_activation_transfer ON card_activation (transfer_id);
CREATE INDEX card_activation_void ON card_activation (void_transfer_id)
    WHERE void_transfer_id IS NOT NULL;
