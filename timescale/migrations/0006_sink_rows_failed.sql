-- Rows a sink could not store (a value PostgreSQL refuses), isolated from their chunk so
-- the rest of it is written; each one is logged by the dataflow.
ALTER TABLE sink_status ADD COLUMN IF NOT EXISTS rows_failed BIGINT NOT NULL DEFAULT 0;
