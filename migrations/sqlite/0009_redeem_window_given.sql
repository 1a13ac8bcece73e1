-- A success gives its slot back by counting it in `given`, no longer by lowering `used`: the
-- attempts a window holds are `used - given`, and `used` only grows, so `used = 1` marks a
-- subject's first attempt in a window exactly once (when the windows that have ended are
-- pruned), however many of its attempts succeed.
ALTER TABLE redeem_window ADD COLUMN given BIGINT NOT NULL DEFAULT 0 CHECK (given >= 0);
