-- Ready-made queries over faucet_http_events. Each one looks at a recent window;
-- add `AND namespace = '...'` (or version) to the WHERE clause to narrow it to one
-- deployment. `elapsed` is in milliseconds.

-- Requests and server errors per minute, last hour.
SELECT date_trunc('minute', time) AS minute,
       count(*) AS requests,
       count(*) FILTER (WHERE status >= 500) AS errors_5xx,
       round(100.0 * count(*) FILTER (WHERE status >= 500) / count(*), 2) AS error_pct
FROM faucet_http_events
WHERE time > now() - interval '1 hour'
GROUP BY minute
ORDER BY minute;

-- Latency percentiles per path, last 24 hours, slowest first.
SELECT path,
       count(*) AS requests,
       percentile_disc(0.50) WITHIN GROUP (ORDER BY elapsed) AS p50_ms,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY elapsed) AS p95_ms,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY elapsed) AS p99_ms,
       max(elapsed) AS max_ms
FROM faucet_http_events
WHERE time > now() - interval '24 hours'
GROUP BY path
ORDER BY p95_ms DESC
LIMIT 20;

-- Busiest paths, last 24 hours, with their client and server errors.
SELECT path,
       count(*) AS requests,
       count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS errors_4xx,
       count(*) FILTER (WHERE status >= 500) AS errors_5xx
FROM faucet_http_events
WHERE time > now() - interval '24 hours'
GROUP BY path
ORDER BY requests DESC
LIMIT 20;

-- Load per worker, last hour: is the balancer spreading requests evenly?
SELECT worker_route,
       target,
       count(*) AS requests,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct,
       round(avg(elapsed), 1) AS mean_ms,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY elapsed) AS p95_ms,
       count(*) FILTER (WHERE status >= 500) AS errors_5xx
FROM faucet_http_events
WHERE time > now() - interval '1 hour'
GROUP BY worker_route, target
ORDER BY worker_route NULLS FIRST, min(worker_id);
