-- TimescaleDB itself. The server must preload it (shared_preload_libraries).
CREATE EXTENSION IF NOT EXISTS timescaledb;
