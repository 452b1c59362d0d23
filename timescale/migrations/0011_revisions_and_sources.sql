-- Revised bars, price-less bars and backfilled ticks (issue 16).
--
-- bars.revision: how many times a bar changed after it closed. A trade arriving within
-- SENTINEL_REVISION_WINDOW_S after its bar closed rewrites the row with the next
-- revision (the sinks upsert it only over a lower one). Nullable with a default: on a
-- hypertable with compression enabled (the community server, migration 0004) a new
-- column cannot carry a constraint.
--
-- bars.open/high/low/close may be NULL: under the tape's trade-condition rules an
-- interval whose every print is volume-only (odd lots alone) has volume but no price.
-- (DROP NOT NULL on a compressed hypertable needs TimescaleDB 2.18 or later; the
-- compose image is 2.19.)
--
-- ticks.source: which backfill a trade came from (`finnhub_tick`, `finnhub_candle`);
-- NULL for the live feed and replayed files.

ALTER TABLE bars ADD COLUMN IF NOT EXISTS revision INTEGER DEFAULT 0;
ALTER TABLE bars_latest ADD COLUMN IF NOT EXISTS revision INTEGER DEFAULT 0;
ALTER TABLE ticks ADD COLUMN IF NOT EXISTS source TEXT;
ALTER TABLE ticks_latest ADD COLUMN IF NOT EXISTS source TEXT;

DO $$
DECLARE
    t TEXT;
    c TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['bars', 'bars_latest'] LOOP
        FOREACH c IN ARRAY ARRAY['open', 'high', 'low', 'close'] LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I DROP NOT NULL', t, c);
        END LOOP;
    END LOOP;
END $$;

-- /stream: a new bar is announced as `bar`, a revision (an update, or a bar first
-- written after it closed) as `bar_revision`.
CREATE OR REPLACE FUNCTION sentinel_notify_bar() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'sentinel_stream',
        (jsonb_build_object(
            'kind', CASE WHEN coalesce(NEW.revision, 0) > 0 THEN 'bar_revision' ELSE 'bar' END
        ) || to_jsonb(NEW))::text
    );
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS bars_stream_notify ON bars;
CREATE TRIGGER bars_stream_notify AFTER INSERT OR UPDATE ON bars
    FOR EACH ROW EXECUTE FUNCTION sentinel_notify_bar();
