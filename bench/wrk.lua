-- wrk script for the benchmark: POST a JSON body, print one machine-readable line.
-- Env: BENCH_BODY_FILE (request body), BENCH_AUTH (optional Authorization header value),
--      BENCH_DELAY_MS (optional pause between a connection's requests, for a paced soak),
--      BENCH_NAMES_FILE (name lists for bodies with @@...@@ markers, see bench/prompts.py).
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local template = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = template
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

-- A template body gets a different prompt per request (same rules as bench/prompts.py).
if template:find("@@N@@", 1, true) then
  local names = assert(io.open(assert(os.getenv("BENCH_NAMES_FILE")), "r"))
  local first, last = {}, {}
  for w in names:read("*l"):gmatch("%S+") do first[#first + 1] = w end
  for w in names:read("*l"):gmatch("%S+") do last[#last + 1] = w end
  names:close()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local n = math.random(1, 2 ^ 30)

  function request()
    n = n + 1
    local fn = first[n % #first + 1]
    local ln = last[math.floor(n / #first) % #last + 1]
    local body = template
      :gsub("@@FIRST@@", fn)
      :gsub("@@LAST@@", ln)
      :gsub("@@first@@", fn:lower())
      :gsub("@@last@@", ln:lower())
      :gsub("@@PHONE@@", string.format("%03d %04d", 200 + n % 800, n % 10000))
      :gsub("@@N@@", tostring(n))
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
