-- Live updates and pipeline status, for the API (/stream, /health, /metrics) and Grafana.

-- Every new bar, forecast and alert is announced on channel `sentinel_stream` with a
-- small JSON payload: {"kind": "bar"|"forecast"|"alert", "symbol": ..., "time": ...,
-- plus the row's own columns}. (Per-row triggers: TimescaleDB hypertables do not
-- support transition tables.) Raw ticks are not announced: far too many.
CREATE OR REPLACE FUNCTION sentinel_notify_stream() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'sentinel_stream',
        (jsonb_build_object('kind', TG_ARGV[0]) || to_jsonb(NEW))::text
    );
    RETURN NULL;
END $$;

DO $$
DECLARE
    t RECORD;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('bars', 'bar'), ('forecasts', 'forecast'),
                                   ('alerts', 'alert')) AS v(tab, kind)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = t.tab || '_stream_notify') THEN
            EXECUTE format(
                'CREATE TRIGGER %I AFTER INSERT ON %I FOR EACH ROW '
                'EXECUTE FUNCTION sentinel_notify_stream(%L)',
                t.tab || '_stream_notify', t.tab, t.kind);
        END IF;
    END LOOP;
END $$;

-- The live feed's state, upserted by the dataflow every few seconds.
CREATE TABLE IF NOT EXISTS feed_status (
    source          TEXT PRIMARY KEY,
    url             TEXT,
    connected       BOOLEAN NOT NULL,
    subscribed      TEXT[] NOT NULL DEFAULT '{}',
    last_message_at TIMESTAMPTZ,
    reconnects      INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Each sink partition's counters, upserted by the dataflow every few seconds.
CREATE TABLE IF NOT EXISTS sink_status (
    table_name   TEXT NOT NULL,
    worker       INTEGER NOT NULL,
    rows_written BIGINT NOT NULL DEFAULT 0,
    rows_skipped BIGINT NOT NULL DEFAULT 0,
    retries      BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, worker)
);

-- Alert notifications Grafana sends to the API's webhook (POST /alerts/notifications).
CREATE TABLE IF NOT EXISTS alert_notifications (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status      TEXT NOT NULL,
    rule_uid    TEXT,
    title       TEXT,
    message     TEXT,
    payload     JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_notifications_received_idx
    ON alert_notifications (received_at DESC);

-- Tables created after 0003 are covered by its default privileges; say so explicitly.
GRANT SELECT ON feed_status, sink_status, alert_notifications TO sentinel_grafana;
