-- One row per proxied HTTP request, written by faucet's postgres telemetry sink.
-- faucet checks these column names and types at start-up (extra columns are allowed
-- if they are nullable or have a default).
CREATE TABLE IF NOT EXISTS faucet_http_events (
    request_uuid UUID,
    namespace TEXT,
    version TEXT,
    target TEXT,
    worker_route TEXT,
    worker_id INT,
    ip_addr INET,
    method TEXT,
    path TEXT,
    query_params TEXT,
    http_version TEXT,
    status SMALLINT,
    user_agent TEXT,
    elapsed BIGINT,
    time TIMESTAMPTZ NOT NULL
);
-- `faucet report` (and most queries over a recent window) filter on time first; with
-- this index a report reads only its window's rows however long the table grows. For a
-- table made before faucet had it (or by the Rust server), run this line once; on a
-- busy table add CONCURRENTLY after INDEX so writes go on meanwhile.
CREATE INDEX IF NOT EXISTS faucet_http_events_time_idx ON faucet_http_events (time);
