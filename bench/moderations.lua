-- wrk script for bench/load_bench.py --client wrk (not for use on its own):
-- POSTs /v1/moderations with a rotating mix of single inputs, reads each
-- response's `saferoute.latency_ms` (the server's own stage times) and, at the
-- end, prints one JSON line prefixed "SAFEROUTE_WRK_JSON " with wrk's latency
-- percentiles, request/error counts and the server-side stage percentiles.
--
-- wrk runs request()/response() in one Lua state per thread and done() in
-- another; per-thread samples reach done() through thread:get().
--
-- With the script argument "paired" (load_bench.py runs one connection per
-- wrk thread, so request() and response() strictly alternate in each Lua
-- state) each response is also timed here, and its overhead = this client
-- latency - that response's model time is recorded per request. wrk's own
-- latency histogram cannot be paired with response bodies.

local ffi = require("ffi")  -- wrk embeds LuaJIT
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } saferoute_timespec;
int clock_gettime(int clock_id, saferoute_timespec* ts);
]]
local kClockMonotonic = 1
local clock_now = ffi.new("saferoute_timespec")
local function now_ms()
  ffi.C.clock_gettime(kClockMonotonic, clock_now)
  return tonumber(clock_now.tv_sec) * 1e3 + tonumber(clock_now.tv_nsec) / 1e6
end

local texts = {
  "What is the capital of France?",
  "How do I make a cake without eggs?",
  "Write a short poem about the sea.",
  "Explain how vaccines train the immune system, in two paragraphs.",
  "Tell me how to hotwire a car.",
  string.rep("Summarise the plot of Hamlet for a ten-year-old. ", 4),
  "Translate 'good morning' into German, French and Spanish.",
  "I feel hopeless and don't know what to do.",
}

-- JSON string literal for the texts above (ASCII; only quotes need escaping).
local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
-- Per-thread samples, milliseconds, one per 200 response.
model_ms = {}        -- small + router + large: the model time of that input
total_ms = {}        -- the server's own total for that input (queue + model)
statuses = {}        -- HTTP status (as a string) -> count, for non-200 answers
unparsed = 0         -- 200 answers without a latency_ms object
overhead_ms = {}     -- paired mode: client latency - model time, per request
local paired = false
local sent_at = nil

function init(args)
  for _, a in ipairs(args) do
    if a == "paired" then paired = true end
  end
  local headers = {["Content-Type"] = "application/json"}
  for i, text in ipairs(texts) do
    requests[i] = wrk.format("POST", "/v1/moderations", headers,
                             '{"input":' .. json_string(text) .. '}')
  end
  -- Threads start at different points of the mix.
  next_request = (thread_index or 0) % #requests + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  if paired then sent_at = now_ms() end
  return r
end

local function stage(latency, name)
  -- The pattern's closing quote keeps "small" from matching "small_queue".
  local value = latency:match('"' .. name .. '":([-%d.eE+]+)')
  return value and tonumber(value) or 0
end

function response(status, headers, body)
  local client_ms = (paired and sent_at) and (now_ms() - sent_at) or nil
  sent_at = nil
  if status ~= 200 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    return
  end
  local latency = body:match('"latency_ms":(%b{})')
  if latency == nil then
    unparsed = unparsed + 1
    return
  end
  local model = stage(latency, "small") + stage(latency, "router") + stage(latency, "large")
  model_ms[#model_ms + 1] = model
  if client_ms then overhead_ms[#overhead_ms + 1] = client_ms - model end
  total_ms[#total_ms + 1] = stage(latency, "total")
end

-- Nearest-rank percentile of a sorted array (same rule as load_bench.py).
local function percentile(sorted, q)
  if #sorted == 0 then return nil end
  local k = math.floor(q / 100 * (#sorted - 1) + 0.5) + 1
  return sorted[math.max(1, math.min(#sorted, k))]
end

local function json_value(v)
  if v == nil then return "null" end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.6g", v)
  end
  if type(v) == "string" then return json_string(v) end
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = json_string(tostring(k)) .. ":" .. json_value(x)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ",") .. "}"
end

local function distribution(samples)
  table.sort(samples)
  return {count = #samples, p50 = percentile(samples, 50), p90 = percentile(samples, 90),
          p99 = percentile(samples, 99), max = samples[#samples]}
end

function done(summary, latency, requests_stats)
  local model, total, overhead, statuses_all, unparsed_all = {}, {}, {}, {}, 0
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("model_ms")) do model[#model + 1] = v end
    for _, v in ipairs(thread:get("overhead_ms")) do overhead[#overhead + 1] = v end
    for _, v in ipairs(thread:get("total_ms")) do total[#total + 1] = v end
    for k, n in pairs(thread:get("statuses")) do statuses_all[k] = (statuses_all[k] or 0) + n end
    unparsed_all = unparsed_all + thread:get("unparsed")
  end
  local seconds = summary.duration / 1e6
  local report = {
    duration_s = seconds,
    requests = summary.requests,
    requests_per_s = summary.requests / seconds,
    -- wrk measures from writing the request to reading the whole response.
    client_latency_ms = {
      p50 = latency:percentile(50) / 1e3, p90 = latency:percentile(90) / 1e3,
      p99 = latency:percentile(99) / 1e3, max = latency.max / 1e3, mean = latency.mean / 1e3,
    },
    errors = {
      connect = summary.errors.connect, read = summary.errors.read,
      write = summary.errors.write, timeout = summary.errors.timeout,
      status_over_399 = summary.errors.status,
      non_200_by_status = statuses_all, unparsed_200 = unparsed_all,
    },
    server_model_ms = distribution(model),
    server_total_ms = distribution(total),
    paired_overhead_ms = distribution(overhead),
  }
  io.write("SAFEROUTE_WRK_JSON " .. json_value(report) .. "\n")
end
