-- wrk script: posts the prepared, signed deliveries and prints one JSON line of results.
--
--   BENCH_REQUESTS=deliveries.tsv wrk -t2 -c32 -d10s --latency -s deliveries.lua http://127.0.0.1:P
--
-- The file holds one delivery a line, `<Stripe-Signature>\t<body>` (run.py writes it), or
-- `<path>\t<Stripe-Signature>\t<body>` for another route than /webhooks/stripe. Thread k of
-- n sends lines k, k+n, k+2n, … in order, so a duplicate still follows its original; a thread
-- that runs out starts again from its first line and counts a wrap (every later delivery is then
-- a duplicate, which run.py reports).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  local count = tonumber(os.getenv("BENCH_THREADS"))
  prepared = {}
  local line_number = 0
  for line in io.lines(path) do
    if line_number % count == thread_index then
      local route = "/webhooks/stripe"
      if line:sub(1, 1) == "/" then  -- `<path>\t<Stripe-Signature>\t<body>`
        local first = line:find("\t", 1, true)
        route = line:sub(1, first - 1)
        line = line:sub(first + 1)
      end
      local tab = line:find("\t", 1, true)
      prepared[#prepared + 1] = wrk.format("POST", route, {
        ["Content-Type"] = "application/json",
        ["Stripe-Signature"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    line_number = line_number + 1
  end
  prepared_count = #prepared
  position = 0
  wraps = 0
  accepted = 0
  duplicates = 0
  refused = 0
end

function request()
  position = position + 1
  if position > #prepared then
    position = 1
    wraps = wraps + 1
  end
  return prepared[position]
end

function response(status, headers, body)
  if status == 200 then
    accepted = accepted + 1
    if body:find('"duplicate":true', 1, true) then
      duplicates = duplicates + 1
    end
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local totals = { accepted = 0, duplicates = 0, refused = 0, wraps = 0, prepared_count = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.6f,"accepted":%d,"duplicates":%d,"refused":%d,' ..
    '"wraps":%d,"prepared":%d,"socket_errors":%d,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, totals.accepted, totals.duplicates,
    totals.refused, totals.wraps, totals.prepared_count,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
