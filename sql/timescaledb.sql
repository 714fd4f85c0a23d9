-- Optional (TimescaleDB 2.13 or later): partition faucet_http_events by time.
-- Run after faucet_http_events.sql; safe to run again.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('faucet_http_events', by_range('time'), if_not_exists => TRUE, migrate_data => TRUE);
