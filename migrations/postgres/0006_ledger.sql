-- The double-entry ledger: customer accounts with one guarded balance each, immutable transfers
-- whose entries sum to zero, spending orders with their refundable remainder, and support
-- adjustments awaiting approval. System accounts (spent:{service}, adjustment, …) are entries
-- only: no balance row that every transfer would update and serialise on.

-- A customer's stored-value account: one currency, one balance that never goes negative.
-- external_id is the store's own customer reference: personal data, so it lives here, mutable,
-- and `tender account erase` blanks it; entries and audit records carry only account_id.
CREATE TABLE account (
    account_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region        TEXT NOT NULL CHECK (length(region) = 2),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    balance_minor BIGINT NOT NULL DEFAULT 0 CHECK (balance_minor >= 0),
    frozen_reason TEXT,
    external_id   TEXT UNIQUE,
    erased_at     TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL
);

-- One balanced movement: effective_at is when it happened in the world (an order, a POS
-- time), recorded_at when tender committed it; the _ms twins are what SQL compares.
CREATE TABLE transfer (
    transfer_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL,
    currency     TEXT NOT NULL CHECK (length(currency) = 3),
    reference    TEXT,
    effective_at TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
    effective_ms BIGINT NOT NULL,
    recorded_ms  BIGINT NOT NULL
);
CREATE INDEX transfer_recorded ON transfer (recorded_ms);

-- A transfer's legs: a positive amount credits the ledger account, a negative one debits it;
-- a transfer's amounts sum to zero. A customer's leg names the account and the balance after
-- it, which is the history; a customer's balance is the sum of its legs.
CREATE TABLE entry (
    transfer_id   BIGINT NOT NULL REFERENCES transfer (transfer_id),
    leg           SMALLINT NOT NULL CHECK (leg >= 0),
    ledger_account TEXT NOT NULL,
    account_id    BIGINT REFERENCES account (account_id),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor <> 0),
    balance_after BIGINT CHECK (balance_after >= 0),
    PRIMARY KEY (transfer_id, leg),
    CHECK ((account_id IS NULL) = (balance_after IS NULL))
);
CREATE INDEX entry_account ON entry (account_id, transfer_id) WHERE account_id IS NOT NULL;
CREATE INDEX entry_ledger_account ON entry (ledger_account);

-- A spend, by the order it paid for; its id is the spend's idempotency key, and what can still
-- be refunded is guarded like a balance.
CREATE TABLE spend_order (
    account_id       BIGINT NOT NULL REFERENCES account (account_id),
    order_ref        TEXT NOT NULL,
    service          TEXT NOT NULL,
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    refundable_minor BIGINT NOT NULL CHECK (refundable_minor >= 0),
    transfer_id      BIGINT NOT NULL REFERENCES transfer (transfer_id),
    PRIMARY KEY (account_id, order_ref),
    CHECK (refundable_minor <= amount_minor)
);

-- A refund, by its own id (its idempotency key), against one order.
CREATE TABLE refund (
    account_id   BIGINT NOT NULL REFERENCES account (account_id),
    refund_ref   TEXT NOT NULL,
    order_ref    TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    transfer_id  BIGINT NOT NULL REFERENCES transfer (transfer_id),
    PRIMARY KEY (account_id, refund_ref),
    FOREIGN KEY (account_id, order_ref) REFERENCES spend_order (account_id, order_ref)
);

-- A support adjustment: posted at once, or pending a second person's approval above the
-- approval threshold (one the account cannot take stays pending). requested_by holds the
-- requester's principal, never the note after it.
CREATE TABLE adjustment (
    adjustment_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES account (account_id),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor <> 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    reason        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'posted')),
    requested_by  TEXT NOT NULL,
    decided_by    TEXT,
    transfer_id   BIGINT REFERENCES transfer (transfer_id),
    requested_at  TIMESTAMPTZ NOT NULL,
    decided_at    TIMESTAMPTZ
);
CREATE INDEX adjustment_pending ON adjustment (adjustment_id) WHERE state = 'pending';
