-- Trade-in credit: valuations from warehouse systems, their uploads, and their postings.
--
-- Device serials, IMEIs and models are personal data once tied to an account: they live only
-- in the mutable columns below (trade_in.device_model and device_id, trade_in_row.device),
-- never in an entry or an audit payload, so `tender account erase` can blank them. A device's
-- uniqueness survives the erase through device_digest, an HMAC-SHA256 of the normalised device
-- id under a key derived from lookup key device_key_id (label "tender trade-in device v1").

-- An upload of valuations: a CSV file from `tender tradein import` or `POST /v1/trade-in-files`.
-- state: receiving (an API body still arriving), received (whole, to be staged), staged (every
-- row read and checked, being applied), imported, refused (as a whole: error_code and
-- error_message say why, and it keeps no rows). sha256 is the hex SHA-256 of its bytes once
-- known; header its header as a JSON array, for the rejects file.
CREATE TABLE trade_in_file (
    file_id        INTEGER PRIMARY KEY,
    sha256         TEXT CHECK (length(sha256) = 64),
    file_name      TEXT,
    submitted_by   TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state IN ('receiving', 'received', 'staged', 'imported', 'refused')),
    bytes          BIGINT NOT NULL DEFAULT 0,
    header         TEXT,
    rows_total     BIGINT NOT NULL DEFAULT 0,
    rows_accepted  BIGINT NOT NULL DEFAULT 0,
    rows_unchanged BIGINT NOT NULL DEFAULT 0,
    rows_revalued  BIGINT NOT NULL DEFAULT 0,
    rows_rejected  BIGINT NOT NULL DEFAULT 0,
    error_code     TEXT,
    error_message  TEXT,
    received_at    TEXT NOT NULL,
    received_ms    BIGINT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX trade_in_file_received ON trade_in_file (received_ms);

-- Each upload's bytes are accepted once: the first upload to claim a SHA-256 holds it, and a
-- second upload of the same bytes is answered with the first one's result.
CREATE TABLE trade_in_file_sha (
    sha256  TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    file_id BIGINT NOT NULL REFERENCES trade_in_file (file_id) ON DELETE CASCADE
);

-- An API upload's body as it streamed in, in pieces, until the import job has read it; the
-- job deletes it with the import's last transaction.
CREATE TABLE trade_in_upload (
    file_id BIGINT NOT NULL REFERENCES trade_in_file (file_id) ON DELETE CASCADE,
    piece   INTEGER NOT NULL CHECK (piece >= 0),
    body    BLOB NOT NULL,
    PRIMARY KEY (file_id, piece)
);

-- A staged row of an upload, by its line number, and then its result. cells holds the row as
-- sent (a JSON array in the header's order) with the device cell blank: the device is in
-- device, which an erase blanks. account_id is the row's account where it parsed (what erase
-- finds the row by); warehouse_id, trade_in_ref and device_digest are its keys where the row
-- parsed, so duplicates inside one file are found here in SQL. code and reason are a refusal;
-- outcome is what the row did.
CREATE TABLE trade_in_row (
    file_id       BIGINT NOT NULL REFERENCES trade_in_file (file_id) ON DELETE CASCADE,
    line          BIGINT NOT NULL CHECK (line > 0),
    cells         TEXT NOT NULL,
    device        TEXT,
    account_id    BIGINT,
    warehouse_id  TEXT,
    trade_in_ref  TEXT,
    device_digest BLOB,
    outcome       TEXT CHECK (outcome IN ('accepted', 'unchanged', 'revalued', 'rejected')),
    code          TEXT,
    reason        TEXT,
    PRIMARY KEY (file_id, line),
    CHECK ((outcome = 'rejected') = (code IS NOT NULL))
);
CREATE INDEX trade_in_row_account ON trade_in_row (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX trade_in_row_key ON trade_in_row (file_id, warehouse_id, trade_in_ref, line);
CREATE INDEX trade_in_row_device ON trade_in_row (file_id, device_digest, line);

-- A valuation, by the warehouse's own trade-in id. value_minor is the assessed value in force
-- (the latest revaluation's); credited_minor what has been posted to the account for it, net;
-- owed_minor what a claw-back could not take back (the account held too little). Posted
-- valuations keep credited - owed = value. state: queued (for the posting job), held (waiting
-- for finance, held_for says why), posted, rejected (by finance, with reason). revision counts
-- its valuations; each posting names the revision it posted.
CREATE TABLE trade_in (
    trade_in_pk    INTEGER PRIMARY KEY,
    warehouse_id   TEXT NOT NULL,
    trade_in_ref   TEXT NOT NULL,
    account_id     BIGINT NOT NULL REFERENCES account (account_id),
    currency       TEXT NOT NULL CHECK (length(currency) = 3),
    value_minor    BIGINT NOT NULL CHECK (value_minor >= 0),
    credited_minor BIGINT NOT NULL DEFAULT 0 CHECK (credited_minor >= 0),
    owed_minor     BIGINT NOT NULL DEFAULT 0 CHECK (owed_minor >= 0),
    grade          TEXT NOT NULL,
    assessed_at    TEXT NOT NULL,
    device_key_id  SMALLINT NOT NULL,
    device_digest  BLOB NOT NULL CHECK (length(device_digest) = 32),
    device_model   TEXT,
    device_id      TEXT,
    state          TEXT NOT NULL CHECK (state IN ('queued', 'held', 'posted', 'rejected')),
    held_for       TEXT CHECK (held_for IN ('daily_amount', 'price_band', 'account_frozen')),
    reason         TEXT,
    submitted_by   TEXT NOT NULL,
    decided_by     TEXT,
    file_id        BIGINT REFERENCES trade_in_file (file_id) ON DELETE SET NULL,
    revision       INTEGER NOT NULL DEFAULT 1 CHECK (revision > 0),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (warehouse_id, trade_in_ref),
    CHECK ((state = 'held') = (held_for IS NOT NULL))
);
-- A device is recorded under one trade-in at a time: one finance rejected frees it.
CREATE UNIQUE INDEX trade_in_device ON trade_in (device_key_id, device_digest)
    WHERE state <> 'rejected';
CREATE INDEX trade_in_queued ON trade_in (trade_in_pk) WHERE state = 'queued';
CREATE INDEX trade_in_account ON trade_in (account_id);

-- Each transfer a valuation posted: a credit, or a claw-back with the part it could not take
-- (owed_minor). The history shows these beside the transfer.
CREATE TABLE trade_in_posting (
    transfer_id BIGINT PRIMARY KEY REFERENCES transfer (transfer_id),
    trade_in_pk BIGINT NOT NULL REFERENCES trade_in (trade_in_pk),
    revision    INTEGER NOT NULL,
    owed_minor  BIGINT NOT NULL DEFAULT 0 CHECK (owed_minor >= 0),
    UNIQUE (trade_in_pk, revision)
);

-- What each warehouse's credits have come to on one business day, per currency: the daily
-- amount above which credits wait for finance is one conditional increment of this row.
CREATE TABLE trade_in_day (
    warehouse_id   TEXT NOT NULL,
    business_day   TEXT NOT NULL,
    currency       TEXT NOT NULL CHECK (length(currency) = 3),
    credited_minor BIGINT NOT NULL DEFAULT 0 CHECK (credited_minor >= 0),
    PRIMARY KEY (warehouse_id, business_day, currency)
);

-- Finance's price band per device model (model_key is the model folded to lower case with
-- spaces collapsed): a credit above max_minor waits for approval.
CREATE TABLE trade_in_band (
    model_key TEXT NOT NULL,
    currency  TEXT NOT NULL CHECK (length(currency) = 3),
    max_minor BIGINT NOT NULL CHECK (max_minor >= 0),
    PRIMARY KEY (model_key, currency)
);
