-- wrk script for benches/http.rs: replays a plan of POST requests, each sent once.
--
-- wrk -t T -c C -d Ns --latency -s post.lua URL -- PLAN KEY_FILE T EXPECTED
--   PLAN      one request a line: path, idempotency key and JSON body, tab-separated. Thread k
--             (of T) sends lines k, k+T, k+2T, …, so no two requests share a key or a body.
--   KEY_FILE  the API key, on its first line (a file, never an argument: argv is public).
--   EXPECTED  the status every request must get (201 for a fresh redemption).
-- A thread whose lines run out sends GET /v1/bench-plan-ran-out instead (404, counted), so a run
-- never replays a key. done() prints `bench NAME VALUE` lines for benches/http.rs to parse.

local threads = {}
local started = 0

-- Runs in the main state, once per thread before its init: numbers the threads.
function setup(thread)
  started = started + 1
  thread:set("id", started)
  table.insert(threads, thread)
end

-- Per-thread globals, read back in done() through thread:get.
created = 0
other = 0
ran_out = 0
first_other = ""

local plan = {}
local next_index = 0
local auth = ""
local expected = 201

function init(args)
  local path, key_file, count = args[1], args[2], tonumber(args[3])
  expected = tonumber(args[4])
  local key = assert(io.open(key_file, "r"))
  auth = "Bearer " .. key:read("*l")
  key:close()
  local line_no = 0
  for line in io.lines(path) do
    if line_no % count == id - 1 then
      local target, idem, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
      table.insert(plan, { target, idem, body })
    end
    line_no = line_no + 1
  end
end

function request()
  next_index = next_index + 1
  local entry = plan[next_index]
  if entry == nil then
    ran_out = ran_out + 1
    return wrk.format("GET", "/v1/bench-plan-ran-out")
  end
  local headers = {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = entry[2],
  }
  return wrk.format("POST", entry[1], headers, entry[3])
end

function response(status, headers, body)
  if status == expected then
    created = created + 1
  else
    other = other + 1
    if first_other == "" then
      -- The error body names a stable code; the server never echoes a code or a key in it.
      first_other = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local totals = { created = 0, other = 0, ran_out = 0 }
  local first = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    if first == "" then
      first = thread:get("first_other")
    end
  end
  local out = function(name, value)
    io.write(string.format("bench %s %s\n", name, tostring(value)))
  end
  out("requests", summary.requests)
  out("duration_us", summary.duration)
  out("expected", totals.created)
  out("other", totals.other)
  out("ran_out", totals.ran_out)
  out("errors_connect", summary.errors.connect)
  out("errors_read", summary.errors.read)
  out("errors_write", summary.errors.write)
  out("errors_timeout", summary.errors.timeout)
  out("latency_mean_us", latency.mean)
  out("latency_p50_us", latency:percentile(50))
  out("latency_p90_us", latency:percentile(90))
  out("latency_p99_us", latency:percentile(99))
  out("latency_p999_us", latency:percentile(99.9))
  out("latency_max_us", latency.max)
  if first ~= "" then
    out("first_other", (first:gsub("[\r\n]", " ")))
  end
end
