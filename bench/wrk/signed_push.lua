-- wrk script: POST one signed GitHub push, with a new X-GitHub-Delivery on every request.
--
-- The body and its X-Hub-Signature-256 are fixed (the delivery id is a header, not covered by the
-- signature). Environment: BENCH_BODY (file with the raw body), BENCH_SIGNATURE ("sha256=<hex>"),
-- BENCH_PREFIX (delivery id prefix, unique per run), BENCH_OUT (file for the JSON summary).
-- Statuses are counted per thread and summed in done(), which writes one JSON object.

local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE")
wrk.headers["User-Agent"] = "GitHub-Hookshot/syncbridge-bench"

local prefix = os.getenv("BENCH_PREFIX") or "bench"
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

counter = 0
statuses = {}

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. tid .. "-" .. counter
  return wrk.format()
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local totals, sent = {}, 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("counter")
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local errors = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"requests": %d, "sent": %d, "duration_us": %d, "bytes": %d, "statuses": {%s}, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, sent, summary.duration, summary.bytes, table.concat(parts, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
  out:close()
end
