-- Cards at the point of sale: the retailers' stores and their jurisdictions, the card's life
-- past issued (active, redeemed, voided, expired; blocked and exposed are flags beside the
-- state), every POS request kept forever as its own idempotency key, each card's activation
-- with its funds-expiry, and each card's history for the support desk.

-- A retailer's store, by the retailer's own id for it. The jurisdiction (ISO 3166-2, such as
-- US-CA) decides the legal minimum of a card's funds-expiry: expiry law is per state or province.
CREATE TABLE retail_store (
    retailer_id  BIGINT NOT NULL REFERENCES retailer (retailer_id),
    store_code   TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (retailer_id, store_code)
);

-- card.state: 0 issued, 1 active, 2 redeemed, 3 voided, 4 expired (domain `CardState`).
-- A blocked card keeps its state and carries the block's reason code; an exposed card carries
-- the Unix milliseconds of the first attempt on its code before activation. A sold card carries
-- its funds-expiry in Unix milliseconds (NULL: never), on the row every change of the card
-- guards, so a redemption compares it in the same update. All are NULL on every card issued so
-- far, so adding them rewrites no row.
ALTER TABLE card ADD COLUMN blocked_reason TEXT;
ALTER TABLE card ADD COLUMN exposed_ms BIGINT;
ALTER TABLE card ADD COLUMN funds_expire_ms BIGINT;
CREATE INDEX card_not_issued ON card (serial) WHERE state <> 0;
-- The expiry job's scan: active cards by funds-expiry.
CREATE INDEX card_funds_expiry ON card (funds_expire_ms) WHERE state = 1;

-- Which batch holds a serial: the batch starting at or before it, found by one index probe.
CREATE INDEX batch_by_first_sequence ON batch (first_sequence);

-- One POS request (an activation of a serial or a range, or a void), by its natural key
-- (retailer, store, terminal, POS transaction, serials), kept forever: a retry with the same key
-- and the same request is answered with `result`, the first answer, and writes nothing.
CREATE TABLE pos_request (
    request_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    retailer_id  BIGINT NOT NULL,
    store_code   TEXT NOT NULL,
    terminal     TEXT NOT NULL,
    pos_txn      TEXT NOT NULL,
    first_serial BIGINT NOT NULL,
    last_serial  BIGINT NOT NULL CHECK (last_serial >= first_serial),
    operation    TEXT NOT NULL CHECK (operation IN ('activate', 'void')),
    value_minor  BIGINT,
    pos_time_ms  BIGINT,
    result       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (retailer_id, store_code) REFERENCES retail_store (retailer_id, store_code),
    CONSTRAINT pos_request_key
        UNIQUE (retailer_id, store_code, terminal, pos_txn, first_serial, last_serial)
);

-- A card's one activation (a voided card is never activated again): its face value, the
-- commission its retailer keeps, the store's jurisdiction, and the funds-expiry computed from
-- them. review names why a person should look at it (an exposed card accepted offline).
CREATE TABLE card_activation (
    serial           BIGINT PRIMARY KEY,
    request_id       BIGINT NOT NULL REFERENCES pos_request (request_id),
    value_minor      BIGINT NOT NULL CHECK (value_minor > 0),
    commission_minor BIGINT NOT NULL CHECK (commission_minor >= 0),
    currency         TEXT NOT NULL CHECK (length(currency) = 3),
    jurisdiction     TEXT NOT NULL,
    activated_at     TIMESTAMPTZ NOT NULL,
    funds_expire_at  TIMESTAMPTZ,
    transfer_id      BIGINT NOT NULL REFERENCES transfer (transfer_id),
    review           TEXT,
    void_request_id  BIGINT REFERENCES pos_request (request_id),
    void_transfer_id BIGINT REFERENCES transfer (transfer_id),
    CHECK (commission_minor <= value_minor),
    CHECK ((void_request_id IS NULL) = (void_transfer_id IS NULL))
);
CREATE INDEX card_activation_review ON card_activation (serial) WHERE review IS NOT NULL;

-- Every change of a card, for its history: who, when, why.
CREATE TABLE card_event (
    event_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial     BIGINT NOT NULL,
    action     TEXT NOT NULL,
    reason     TEXT,
    request_id BIGINT,
    actor      TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX card_event_by_serial ON card_event (serial, event_id);

-- A card's legs name its serial, as a customer's name its account: a card's balance (the
-- liability it carries) is the sum of its legs.
ALTER TABLE entry ADD COLUMN serial BIGINT;
CREATE INDEX entry_serial ON entry (serial) WHERE serial IS NOT NULL;
