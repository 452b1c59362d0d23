-- The newest row of each key, in small plain tables, so that what the API serves as
-- "latest" (and /health) costs one index probe however long the history is. A query on
-- a hypertable is planned over its chunks, and with thousands of them (years of daily
-- data in one-day chunks) planning alone took seconds.
--
-- Each `<table>_latest` has the columns of `<table>`, one row per key. The sinks keep
-- them current in the same transaction as the rows they write (connectors/timescale/
-- sinks.py): a row replaces the stored one only when it is newer (by `time`, then the
-- rest of the hypertable's key), so a replayed row changes nothing, like the hypertable's
-- own ON CONFLICT DO NOTHING. Rows written to the hypertables by other means (plain SQL)
-- do not reach them; `sentinel db migrate` backfills them once, below.

DO $$
DECLARE
    t RECORD;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('ticks', 'symbol', 'time DESC, seq DESC'),
        ('bars', 'symbol', 'time DESC'),
        ('bar_metrics', 'symbol', 'time DESC'),
        ('forecasts', 'symbol, model, target, horizon', 'time DESC'),
        ('model_scores', 'symbol, model, target, metric', 'time DESC'),
        ('model_checkpoints', 'symbol, model', 'time DESC')
    ) AS v(tab, latest_key, newest_first)
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
            'PRIMARY KEY (%s))',
            t.tab || '_latest', t.tab, t.latest_key);
        EXECUTE format(
            'INSERT INTO %I SELECT DISTINCT ON (%s) * FROM %I ORDER BY %s, %s '
            'ON CONFLICT DO NOTHING',
            t.tab || '_latest', t.latest_key, t.tab, t.latest_key, t.newest_first);
        EXECUTE format('GRANT SELECT ON %I TO sentinel_grafana', t.tab || '_latest');
    END LOOP;
END $$;
