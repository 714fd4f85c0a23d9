-- One row per structured event, written by faucet's postgres telemetry sink: the lines an
-- R app logs with the faucet R package (info(), warn(), error(), ...) and faucet's own
-- worker lifecycle steps (event_type worker_start, worker_online, worker_exit,
-- worker_restart; target 'faucet'). The first ten columns are the Rust faucet's table;
-- worker_route and worker_id say which worker it came from, as in faucet_http_events.
-- Both are optional: faucet writes a table made by the Rust server without them. Add
-- them (then restart faucet) with:
--   ALTER TABLE faucet_log_events ADD COLUMN worker_route TEXT, ADD COLUMN worker_id INT;
-- The table itself is optional too: without it faucet logs these events instead.
CREATE TABLE IF NOT EXISTS faucet_log_events (
    namespace TEXT,
    version TEXT,
    target TEXT,
    time TIMESTAMPTZ NOT NULL,
    event_id UUID,
    parent_event_id UUID,
    level TEXT,
    event_type TEXT,
    message TEXT,
    body JSONB,
    worker_route TEXT,
    worker_id INT
);
