-- requires-license: timescale
-- Compression and retention need TimescaleDB's community license (the docker compose
-- image has it; Debian's Apache-only build does not, and there this stays pending).

ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol',
                       timescaledb.compress_orderby = 'time, seq');
SELECT add_compression_policy('ticks', INTERVAL '2 days', if_not_exists => TRUE);
SELECT add_retention_policy('ticks', INTERVAL '90 days', if_not_exists => TRUE);
SELECT add_retention_policy('ticks_rejected', INTERVAL '30 days', if_not_exists => TRUE);

ALTER TABLE bars SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol',
                      timescaledb.compress_orderby = 'time');
SELECT add_compression_policy('bars', INTERVAL '14 days', if_not_exists => TRUE);

ALTER TABLE bar_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol',
                             timescaledb.compress_orderby = 'time');
SELECT add_compression_policy('bar_metrics', INTERVAL '14 days', if_not_exists => TRUE);

ALTER TABLE model_scores SET (timescaledb.compress,
                              timescaledb.compress_segmentby = 'symbol, model, target, metric',
                              timescaledb.compress_orderby = 'time');
SELECT add_compression_policy('model_scores', INTERVAL '14 days', if_not_exists => TRUE);
SELECT add_retention_policy('model_checkpoints', INTERVAL '180 days', if_not_exists => TRUE);
