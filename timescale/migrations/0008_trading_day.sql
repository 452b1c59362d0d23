-- The trading day: each ticker's market calendar, trades outside the session flagged,
-- session open and close events, one summary per symbol per session, and the manifest
-- of the end-of-day Parquet archive (what retention may drop).

-- An exchange_calendars code (XNYS, XLON, ...) or '24/7'; checked by the API.
ALTER TABLE tickers ADD COLUMN IF NOT EXISTS calendar TEXT NOT NULL DEFAULT 'XNYS';

-- A trade outside its calendar's regular session (pre-market, after hours) or carrying a
-- feed's extended-hours condition. Whether such trades enter bars is a setting.
ALTER TABLE ticks ADD COLUMN IF NOT EXISTS extended BOOLEAN NOT NULL DEFAULT FALSE;

-- A session opening or closing for a symbol, as the dataflow saw it pass: `time` is the
-- calendar's open or close time; `session_date` the exchange's label of the session.
CREATE TABLE IF NOT EXISTS session_events (
    time          TIMESTAMPTZ NOT NULL,
    symbol        TEXT NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('open', 'close')),
    session_date  DATE NOT NULL,
    calendar      TEXT NOT NULL,
    PRIMARY KEY (symbol, time, event)
);
SELECT create_hypertable('session_events', by_range('time', INTERVAL '365 days'),
                         if_not_exists => TRUE);

-- One row per symbol per trading session (regular hours), written at the close. A plain
-- table: a few hundred rows per symbol per year. Volatilities are of log returns; `_ann`
-- ones annualized with the calendar's sessions per year; `overnight_return` is the log
-- return from the previous session's close to this session's first trade.
CREATE TABLE IF NOT EXISTS daily_summary (
    session_date      DATE NOT NULL,
    symbol            TEXT NOT NULL,
    calendar          TEXT NOT NULL,
    open_time         TIMESTAMPTZ NOT NULL,
    close_time        TIMESTAMPTZ NOT NULL,
    open              DOUBLE PRECISION,
    high              DOUBLE PRECISION,
    low               DOUBLE PRECISION,
    close             DOUBLE PRECISION,
    volume            DOUBLE PRECISION NOT NULL,
    vwap              DOUBLE PRECISION,
    trades            INTEGER NOT NULL,
    bars              INTEGER NOT NULL,
    realized_vol      DOUBLE PRECISION,
    realized_vol_ann  DOUBLE PRECISION,
    sharpe            DOUBLE PRECISION,
    overnight_return  DOUBLE PRECISION,
    alerts            JSONB NOT NULL DEFAULT '{}',
    model_scores      JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (symbol, session_date)
);
CREATE INDEX IF NOT EXISTS daily_summary_date_idx ON daily_summary (session_date DESC);

-- The end-of-day archive's manifest: one row per symbol and day archived to Parquet
-- (`day` is the local date in the calendar's time zone, `[day_start, day_end)` its span
-- in UTC). Retention drops a `ticks` chunk only when every day it holds is here and
-- verified: the file's rows and checksum match both this row and the database.
CREATE TABLE IF NOT EXISTS tick_archive (
    symbol       TEXT NOT NULL,
    day          DATE NOT NULL,
    calendar     TEXT NOT NULL,
    day_start    TIMESTAMPTZ NOT NULL,
    day_end      TIMESTAMPTZ NOT NULL,
    uri          TEXT NOT NULL,
    rows         BIGINT NOT NULL,
    checksum     TEXT NOT NULL,
    archived_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    verified_at  TIMESTAMPTZ,
    PRIMARY KEY (symbol, day)
);
