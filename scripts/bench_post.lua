-- wrk script for scripts/bench.py: POST one chat completion body over and over,
-- time every response itself, stop after a number of responses, and print the
-- summary as one JSON line ("BENCH_JSON {...}").
--
--   BENCH_BODY      the JSON request body (required)
--   BENCH_REQUESTS  stop a thread after so many responses (0: only -d bounds it)
--
-- A thread that reaches its count prints "BENCH_STOP" and stops; bench.py
-- sends wrk SIGINT once all have, which ends the run at once.
--
-- bench.py runs wrk with one connection per thread (-tN -cN) so that each
-- thread's Lua state sees exactly one request in flight and can time it:
-- request() notes the clock, response() the latency. Two reasons not to use
-- wrk's own figures: its latency histogram is not trustworthy on this machine
-- (on a 30 us ping-pong it reports a p99 of ~3.7 ms that neither these
-- timestamps nor a Python client see), and its main thread sleeps for the
-- whole -d even when every thread stopped early, so summary.duration is not
-- the run's length. Time comes from CLOCK_MONOTONIC through LuaJIT's FFI.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local body = os.getenv("BENCH_BODY")
local path = wrk.path

-- Per thread (each wrk thread runs its own copy of this script).
limit = tonumber(os.getenv("BENCH_REQUESTS") or "0")
started = 0
finished = 0
latencies = {}
statuses = 0 -- responses that were not 200
local sent_at = 0
local request_bytes = nil

function init(args)
   started = now_us()
   finished = started
   request_bytes = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

function request()
   sent_at = now_us()
   return request_bytes
end

function response(status, headers, response_body)
   finished = now_us()
   latencies[#latencies + 1] = finished - sent_at
   if status ~= 200 then
      statuses = statuses + 1
   end
   if limit > 0 and #latencies == limit then
      -- Tell bench.py, which wakes wrk's main thread once every thread is done.
      io.write("BENCH_STOP\n")
      io.flush()
      wrk.thread:stop()
   end
end

-- In the main script: keep the threads to collect their figures in done().
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local function percentile(sorted, p)
   if #sorted == 0 then
      return 0
   end
   local rank = math.ceil(p / 100 * #sorted)
   return sorted[math.max(rank, 1)]
end

function done(summary, latency, requests)
   local all = {}
   local first, last, bad = math.huge, 0, 0
   for _, thread in ipairs(threads) do
      for _, value in ipairs(thread:get("latencies")) do
         all[#all + 1] = value
      end
      first = math.min(first, thread:get("started"))
      last = math.max(last, thread:get("finished"))
      bad = bad + thread:get("statuses")
   end
   table.sort(all)
   local sum = 0
   for _, value in ipairs(all) do
      sum = sum + value
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"elapsed_us":%d,"non_200":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f}}\n',
      #all, math.max(last - first, 1), bad,
      e.connect, e.read, e.write, e.timeout,
      sum / math.max(#all, 1), percentile(all, 50), percentile(all, 90),
      percentile(all, 99), percentile(all, 100)))
end
