-- A read-only role for Grafana. It may log in once `sentinel db migrate` has given it a
-- password (SENTINEL_GRAFANA_DB_PASSWORD); it can read every table, now and later, and
-- every session it opens is read-only with a statement timeout.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinel_grafana') THEN
        CREATE ROLE sentinel_grafana LOGIN;
    END IF;
END $$;

ALTER ROLE sentinel_grafana SET default_transaction_read_only = on;
ALTER ROLE sentinel_grafana SET statement_timeout = '30s';
GRANT USAGE ON SCHEMA public TO sentinel_grafana;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO sentinel_grafana;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO sentinel_grafana;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM sentinel_grafana;
