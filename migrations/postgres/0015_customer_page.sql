-- The customer's page: single-use sign-in links the store's site mints for its customer, and
-- the browser sessions they open. Neither table holds a secret a copy could replay: a link is
-- kept by its random id (its token carries the id under a MAC only tender can make), a session
-- by the SHA-256 of its cookie.

-- A sign-in link, from its minting until it is used or expires. link_id is 16 random bytes,
-- hex. expires_ms and used_ms are Unix milliseconds; the one guarded update that sets used_ms
-- makes the link single-use under any number of clicks.
CREATE TABLE sign_in_link (
    link_id    TEXT PRIMARY KEY CHECK (length(link_id) = 32),
    account_id BIGINT NOT NULL REFERENCES account (account_id),
    minted_by  TEXT NOT NULL,
    minted_ms  BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT
);
CREATE INDEX sign_in_link_expires ON sign_in_link (expires_ms);

-- A browser session, by the SHA-256 of its cookie's 32 random bytes. ended_ms is set by
-- sign-out; expires_ms bounds its life whatever the browser does. notice is the outcome of
-- the last form the session posted (JSON; never a code), shown once by the page it redirects
-- to and then cleared.
CREATE TABLE web_session (
    session_hash BYTEA PRIMARY KEY CHECK (length(session_hash) = 32),
    account_id   BIGINT NOT NULL REFERENCES account (account_id),
    link_id      TEXT NOT NULL REFERENCES sign_in_link (link_id),
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    ended_ms     BIGINT,
    notice       TEXT
);
CREATE INDEX web_session_expires ON web_session (expires_ms);

-- The history page names the card a redemption took, the service an order was spent at and
-- the order a refund returned: each found from its transfer.
CREATE INDEX redemption_transfer ON redemption (transfer_id);
CREATE INDEX spend_order_transfer ON spend_order (transfer_id);
CREATE INDEX refund_transfer ON refund (transfer_id);
