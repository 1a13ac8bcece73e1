-- Two retailers must not look alike in a listing. The application stores each name's key (the
-- confusable skeleton of its NFKC, lower-cased form; see `RetailerName::key`) and conflicts on it.
ALTER TABLE retailer ADD COLUMN name_key TEXT NOT NULL DEFAULT '';

-- Rows from before this migration: SQL has no skeleton, so a lower-case copy of the name stands
-- in, suffixed with the id where two names differ only in case, so the index can be built.
UPDATE retailer SET name_key = lower(name) || CASE
    WHEN EXISTS (
        SELECT 1 FROM retailer AS earlier
        WHERE lower(earlier.name) = lower(retailer.name) AND earlier.retailer_id < retailer.retailer_id
    ) THEN '#' || retailer_id
    ELSE ''
END;

-- Not `retailer_name_key`: PostgreSQL already gives that name to the name's UNIQUE constraint.
CREATE UNIQUE INDEX retailer_by_name_key ON retailer (name_key);
