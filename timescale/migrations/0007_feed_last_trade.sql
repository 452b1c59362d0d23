-- When the feed last received a trade (not a ping): a connected feed with recent trades
-- and no new bars means the dataflow is down or stuck (Grafana's "Pipeline down" rule).
ALTER TABLE feed_status ADD COLUMN IF NOT EXISTS last_trade_at TIMESTAMPTZ;
