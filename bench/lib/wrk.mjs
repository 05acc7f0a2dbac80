// wrk driven over a list of URL paths, and what it reports.
import fs from 'node:fs'

/**
 * Writes a wrk script that GETs, round robin and keep-alive, every path of
 * the file named by $WRK_PATHS (one a line) and prints one RESULT line.
 * Requests are formatted in init(), per thread: only then does wrk.headers
 * carry the Host header (formatted at load time they would lack it: 400s).
 */
export function writeRoundRobinScript (file) {
  fs.writeFileSync(file, `-- round-robin GETs over the paths in $WRK_PATHS (bench/lib/wrk.mjs)
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines(os.getenv("WRK_PATHS")) do
    if #line > 0 then reqs[#reqs + 1] = wrk.format("GET", line) end
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d bytes=%d duration_us=%d status_errors=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`)
}

/** The figures of the RESULT line of such a script's output, by name, or undefined when there is none. */
export function wrkResult (stdout) {
  const m = /RESULT (.*)/.exec(stdout)
  return m ? Object.fromEntries([...m[1].matchAll(/(\w+)=(\d+)/g)].map(x => [x[1], Number(x[2])])) : undefined
}
