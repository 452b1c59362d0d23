-- requires-license: timescale
-- Ticks leave the database only once archived and verified (`sentinel retention`, run by
-- `sentinel archive --watch`): migration 0004's time-only policy on `ticks` would drop
-- chunks whether or not their days are in the archive. Other tables keep their policies.
SELECT remove_retention_policy('ticks', if_exists => TRUE);
