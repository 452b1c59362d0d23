-- The tables every part of Stock Sentinel relies on (see README, "Tables").
-- Time is TIMESTAMPTZ in UTC; every time-series table is a hypertable on `time`
-- (ticks_rejected on `received_at`). Chunk intervals follow the expected volume:
-- raw ticks are the bulk (a busy symbol trades ~100 times/s), bars and derived rows
-- are one per symbol per bar, checkpoints and alerts are rare.

CREATE TABLE IF NOT EXISTS tickers (
    symbol     TEXT PRIMARY KEY CHECK (length(symbol) BETWEEN 1 AND 32),
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Raw trades. `seq` is the source's position of the trade (file row, feed counter), so
-- that a re-delivered trade is the same row and the sinks can be idempotent.
CREATE TABLE IF NOT EXISTS ticks (
    time       TIMESTAMPTZ NOT NULL,
    symbol     TEXT NOT NULL,
    price      DOUBLE PRECISION NOT NULL,
    size       DOUBLE PRECISION NOT NULL DEFAULT 0,
    seq        BIGINT NOT NULL,
    conditions TEXT,
    PRIMARY KEY (symbol, time, seq)
);
SELECT create_hypertable('ticks', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE);

-- Dead letters: every message the parser refused, with its reason, never dropped.
CREATE TABLE IF NOT EXISTS ticks_rejected (
    received_at TIMESTAMPTZ NOT NULL,
    source      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    symbol      TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT,
    payload     TEXT NOT NULL,
    PRIMARY KEY (source, received_at, seq)
);
SELECT create_hypertable('ticks_rejected', by_range('received_at', INTERVAL '7 days'),
                         if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS ticks_rejected_reason_idx ON ticks_rejected (reason, received_at DESC);

-- OHLCV bars; `time` is the bar's start, `bar_seconds` its length.
CREATE TABLE IF NOT EXISTS bars (
    time        TIMESTAMPTZ NOT NULL,
    symbol      TEXT NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL,
    vwap        DOUBLE PRECISION,
    trades      INTEGER NOT NULL,
    bar_seconds INTEGER NOT NULL,
    PRIMARY KEY (symbol, time)
);
SELECT create_hypertable('bars', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE);

-- Per-bar statistics. Volatilities are standard deviations of one bar's log return;
-- the *_ann columns are annualized for the bar length and the trading session.
CREATE TABLE IF NOT EXISTS bar_metrics (
    time              TIMESTAMPTZ NOT NULL,
    symbol            TEXT NOT NULL,
    log_return        DOUBLE PRECISION,
    realized_vol      DOUBLE PRECISION,
    ewma_vol          DOUBLE PRECISION,
    realized_vol_ann  DOUBLE PRECISION,
    ewma_vol_ann      DOUBLE PRECISION,
    sharpe            DOUBLE PRECISION,
    bars_seen         BIGINT NOT NULL,
    PRIMARY KEY (symbol, time)
);
SELECT create_hypertable('bar_metrics', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE);

-- Forecasts. `made_at` is the start of the last bar the model had seen; `horizon` counts
-- bars after it; `time` is the expected start of the forecast bar.
CREATE TABLE IF NOT EXISTS forecasts (
    time     TIMESTAMPTZ NOT NULL,
    symbol   TEXT NOT NULL,
    model    TEXT NOT NULL,
    target   TEXT NOT NULL CHECK (target IN ('return', 'volatility')),
    horizon  SMALLINT NOT NULL CHECK (horizon >= 1),
    value    DOUBLE PRECISION NOT NULL,
    lower    DOUBLE PRECISION,
    upper    DOUBLE PRECISION,
    made_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, model, target, horizon, time)
);
SELECT create_hypertable('forecasts', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS forecasts_symbol_made_at_idx ON forecasts (symbol, made_at DESC);

-- Prequential scores, one row per bar per model per metric.
CREATE TABLE IF NOT EXISTS model_scores (
    time    TIMESTAMPTZ NOT NULL,
    symbol  TEXT NOT NULL,
    model   TEXT NOT NULL,
    target  TEXT NOT NULL,
    metric  TEXT NOT NULL,
    value   DOUBLE PRECISION,
    PRIMARY KEY (symbol, model, target, metric, time)
);
SELECT create_hypertable('model_scores', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS model_scores_symbol_time_idx ON model_scores (symbol, time DESC);

-- Serialized model state, every 20 minutes by default.
CREATE TABLE IF NOT EXISTS model_checkpoints (
    time      TIMESTAMPTZ NOT NULL,
    symbol    TEXT NOT NULL,
    model     TEXT NOT NULL,
    version   INTEGER NOT NULL,
    bars_seen BIGINT NOT NULL DEFAULT 0,
    state     BYTEA NOT NULL,
    metrics   JSONB NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (symbol, model, time)
);
SELECT create_hypertable('model_checkpoints', by_range('time', INTERVAL '30 days'),
                         if_not_exists => TRUE);

CREATE TABLE IF NOT EXISTS alerts (
    time      TIMESTAMPTZ NOT NULL,
    symbol    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    value     DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    message   TEXT NOT NULL,
    PRIMARY KEY (symbol, kind, time)
);
SELECT create_hypertable('alerts', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS alerts_kind_time_idx ON alerts (kind, time DESC);

-- The live source follows `tickers` through this channel (plus a periodic re-read).
CREATE OR REPLACE FUNCTION sentinel_notify_tickers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sentinel_tickers',
                      COALESCE(NEW.symbol, OLD.symbol) || ':' || TG_OP);
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tickers_notify') THEN
        CREATE TRIGGER tickers_notify AFTER INSERT OR UPDATE OR DELETE ON tickers
            FOR EACH ROW EXECUTE FUNCTION sentinel_notify_tickers();
    END IF;
END $$;
