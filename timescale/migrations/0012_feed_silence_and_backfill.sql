-- Issue 16: a feed connection closed for silence, and the gaps filled from the REST API.
-- silent_reconnects: connections closed because nothing at all (no trade, no ping)
-- came for SENTINEL_FEED_SILENT_AFTER_S; backfilled_trades: trades fetched to fill the
-- gaps of reconnects (journaled, marked in ticks.source); last_backfill: what the last
-- backfill did, or why it failed.
ALTER TABLE feed_status ADD COLUMN IF NOT EXISTS silent_reconnects INTEGER NOT NULL DEFAULT 0;
ALTER TABLE feed_status ADD COLUMN IF NOT EXISTS backfilled_trades BIGINT NOT NULL DEFAULT 0;
ALTER TABLE feed_status ADD COLUMN IF NOT EXISTS last_backfill_at TIMESTAMPTZ;
ALTER TABLE feed_status ADD COLUMN IF NOT EXISTS last_backfill TEXT;
