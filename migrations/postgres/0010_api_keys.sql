-- The API's clients: one row per API key, found by its public key id, holding only a keyed
-- hash of the secret, so a copy of the database lets no one call the API.

-- An API client. name is the operator's handle for it (1 to 32 of a-z 0-9 . _ -, domain
-- `API_KEY_NAME_MAX_CHARS`): unique, since `api-key revoke` names it and the audit trail records
-- its calls as `api:<name>`. role is one of the domain's `ApiRole`s. A point-of-sale key is bound
-- to its retailer, and may be bound to one of that retailer's stores (both NULL for the other
-- roles: the service enforces which role may carry which). key_id is the non-secret part of the
-- key that finds the row; secret_mac is HMAC-SHA256 of the secret under a key derived from lookup
-- key mac_key_id, kept so a lookup key rotation leaves existing API keys working. Revoked keys
-- keep their row: the name stays taken and the trail's `api:<name>` keeps meaning one client.
CREATE TABLE api_client (
    client_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 32),
    role        TEXT NOT NULL
        CHECK (role IN ('pos', 'redeem', 'support', 'warehouse', 'finance', 'admin')),
    retailer_id BIGINT REFERENCES retailer (retailer_id),
    store_code  TEXT,
    key_id      TEXT NOT NULL UNIQUE,
    mac_key_id  SMALLINT NOT NULL,
    secret_mac  BYTEA NOT NULL CHECK (length(secret_mac) = 32),
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TIMESTAMPTZ,
    revoked_by  TEXT,
    FOREIGN KEY (retailer_id, store_code) REFERENCES retail_store (retailer_id, store_code),
    CHECK (store_code IS NULL OR retailer_id IS NOT NULL),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
