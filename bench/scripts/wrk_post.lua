-- wrk script of bench/scripts/agents_wrk.sh: every request is a one-row INSERT into
-- bench_http (the table of `patina bench http`), as the Go client of `bench http` sends it.
-- Ids are unique across threads and runs: BASE (from the environment) plus a range per thread.
local counter = 0
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("base", tonumber(os.getenv("BASE")) + nthreads * 10000000)
end

request = function()
  counter = counter + 1
  local id = base + counter
  local body = '[["INSERT INTO bench_http (id, a, b) VALUES (?, ?, ?)", [' .. id ..
    ', "value of some length", ' .. (id % 1000) .. ']]]'
  return wrk.format("POST", "/v1/transactions", {["Content-Type"] = "application/json"}, body)
end

-- A refused write is printed, and the script's caller counts them: a run with refusals does
-- not measure the write path.
response = function(status, headers, body)
  if status ~= 200 then
    io.write("refused " .. status .. " " .. body .. "\n")
  end
end
