import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import type { Server } from 'node:http'
import { Histogram, Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GridHistogram } from '../../src/gateway/grid-histogram.js'
import { DURATION_BUCKETS_S, STATUS_CLASSES } from '../../src/gateway/metrics.js'
import { ROUTE_NAMES } from '../../src/gateway/routes.js'
import { startGateway } from '../../src/gateway/server.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { runAsync, runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { serveFiles } from '../helpers/http.js'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'

/** One sample of the Prometheus text format. */
interface Sample { name: string, labels: Record<string, string>, value: number }

/** The samples of a Prometheus text exposition, and the names its `# TYPE` lines declare. */
function parseExposition (text: string): { samples: Sample[], types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) { types.set(type[1]!, type[2]!); continue }
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    samples.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return { samples, types }
}

/** A series' key: its name and labels, sorted. */
const seriesKey = (s: Sample): string => `${s.name}{${Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}="${v}"`).join(',')}}`

/** The value of the one sample of `name` whose labels include `labels` (0 if none). */
function valueOf (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0)
}

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/** The metric names a PromQL expression reads (functions, keywords, label names and Grafana variables left out). */
function metricNamesOf (expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // string literals (label values, regexes)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\boffset\s+\S+/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ') // Grafana variables
  const names: string[] = []
  for (const m of e.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (e.slice(m.index + m[0].length).trimStart().startsWith('(')) continue // a function or aggregation
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue
    names.push(m[0])
  }
  return names
}

/** Every PromQL expression of a Grafana dashboard: each panel target's `expr` (rows' panels too) and each query variable's metric. */
function dashboardQueries (dashboard: unknown): Array<{ where: string, expr: string }> {
  const found: Array<{ where: string, expr: string }> = []
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) { node.forEach((n, i) => walk(n, `${where}[${i}]`)); return }
    if (node === null || typeof node !== 'object') return
    const o = node as Record<string, unknown>
    const title = typeof o.title === 'string' ? `${where} "${o.title}"` : where
    if (typeof o.expr === 'string') found.push({ where: title, expr: o.expr })
    for (const [k, v] of Object.entries(o)) if (k !== 'templating') walk(v, `${title}.${k}`)
  }
  walk(dashboard, 'dashboard')
  for (const v of (dashboard as { templating?: { list?: Array<{ name: string, type: string, definition?: string }> } }).templating?.list ?? []) {
    if (v.type !== 'query') continue
    // label_values(METRIC, LABEL): only the first argument is a metric
    const m = /^label_values\((.*),\s*\w+\)$/.exec(v.definition ?? '')
    expect(m, `variable ${v.name}: ${v.definition}`).not.toBeNull()
    found.push({ where: `variable ${v.name}`, expr: m![1]! })
  }
  return found
}

const DASHBOARD = resolve(import.meta.dirname, '../../contrib/grafana/nixipfs.json')

describe('metric names of PromQL expressions', () => {
  it('are found past functions, aggregations, matchers, ranges, label lists and variables', () => {
    const vectors: Array<[string, string[]]> = [
      ['sum by (route) (rate(nixipfs_http_requests_total{instance=~"$instance",route="nar"}[$__rate_interval]))', ['nixipfs_http_requests_total']],
      ['histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{x="y}"}[5m])))', ['a_bucket']],
      ['sum(rate(a_total[5m])) / sum(rate(b_total[5m])) by (code)', ['a_total', 'b_total']],
      ['min by (name) (expiry_seconds) - time()', ['expiry_seconds']],
      ['rate(process_cpu_seconds_total[1m] offset 5m) * 1e3 > bool 0.5 and on (instance) up', ['process_cpu_seconds_total', 'up']],
      ['nodejs_heap_size_used_bytes', ['nodejs_heap_size_used_bytes']]
    ]
    for (const [expr, names] of vectors) expect(metricNamesOf(expr), expr).toEqual(names)
  })
})

describe('per-gateway registries', () => {
  it('counts each gateway\'s requests in its own registry; process metrics appear once in each', async () => {
    const stores = [await PackStore.openRepo(tmp()), await PackStore.openRepo(tmp())]
    const [a, b] = await Promise.all(stores.map(async store => await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 })))
    try {
      for (let i = 0; i < 7; i++) await (await fetch(`${a!.url}/nix-cache-info`)).text()
      await (await fetch(`${b!.url}/nix-cache-info`)).text()
      const [ta, tb] = [await (await fetch(`${a!.url}/metrics`)).text(), await (await fetch(`${b!.url}/metrics`)).text()]
      const [ea, eb] = [parseExposition(ta), parseExposition(tb)]
      expect(valueOf(ea.samples, 'nixipfs_http_request_duration_seconds_count', { route: 'cacheinfo', status_class: '2xx' })).toBe(7)
      expect(valueOf(eb.samples, 'nixipfs_http_request_duration_seconds_count', { route: 'cacheinfo', status_class: '2xx' })).toBe(1)
      for (const text of [ta, tb]) {
        for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
          expect(text.match(new RegExp(`^# TYPE ${name} `, 'gm')), name).toHaveLength(1)
        }
      }
      expect(valueOf(ea.samples, 'process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024)
    } finally {
      await a!.close(); await b!.close()
      for (const s of stores) await s.close()
    }
  })

  it('a grid histogram exposes what prom-client\'s own histogram does for the same observations', async () => {
    const [own, reference] = [new Registry(), new Registry()]
    const grid = new GridHistogram({ name: 'd_seconds', help: 'h', buckets: DURATION_BUCKETS_S, rows: { name: 'route', values: ROUTE_NAMES }, columns: { name: 'status_class', values: STATUS_CLASSES }, registers: [own] })
    const plain = new Histogram({ name: 'd_seconds', help: 'h', buckets: [...DURATION_BUCKETS_S], labelNames: ['route', 'status_class'], registers: [reference] })
    for (let i = 0; i < 5000; i++) {
      const [r, c] = [i * 7 % 3, i * 13 % 5]
      // On the bounds, between them, past the last: 0, 0.001, 0.0025…, 61
      const v = i % 11 === 0 ? DURATION_BUCKETS_S[i % DURATION_BUCKETS_S.length]! : (i % 97 === 0 ? 61 : (i % 1000) / 997)
      grid.record(r, c, v)
      plain.observe({ route: ROUTE_NAMES[r]!, status_class: STATUS_CLASSES[c]! }, v)
    }
    const sorted = async (reg: Registry): Promise<string[]> => parseExposition(await reg.metrics()).samples.map(s => `${seriesKey(s)} ${s.value}`).sort()
    const got = await sorted(own)
    expect(got).toEqual(await sorted(reference))
    expect(got.length).toBe(3 * 5 * (DURATION_BUCKETS_S.length + 3))
  })
})

describe.runIf(nixAvailable)('GET /metrics of a gateway serving real nix copy', () => {
  const salt = `${Date.now()}-${process.pid}`
  let closure: string[]
  let top: string
  let pub: string
  let gw: GatewayProcess
  let upstream: { url: string, server: Server }

  const scrape = async (): Promise<ReturnType<typeof parseExposition>> => parseExposition(await (await fetch(`${gw.url}/metrics`)).text())
  /** The `nixipfs_http_request_duration_seconds_count` of every series, by `route status_class`. */
  const counts = (samples: Sample[]): Map<string, number> => new Map(samples.filter(s => s.name === 'nixipfs_http_request_duration_seconds_count').map(s => [`${s.labels.route} ${s.labels.status_class}`, s.value]))
  const delta = (after: Map<string, number>, before: Map<string, number>): Record<string, number> =>
    Object.fromEntries([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]).filter(([, d]) => d !== 0))

  beforeAll(async () => {
    ;[top] = nixBuild(`let lib = ${shellDerivation(`metrics-lib-${salt}`, 'mkdir $out; i=0; while [ $i -lt 30000 ]; do echo "row $i ' + salt + '"; i=$((i+1)); done > $out/rows')}; in ${shellDerivation(`metrics-top-${salt}`, 'mkdir $out; echo ${lib} > $out/ref')}`) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    const repo = tmp()
    const r = runCli(['publish', '-r', '--repo', repo, top])
    expect(r.stderr + r.stdout).toContain('published 2 path(s)')
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    // An upstream that has nothing: narinfo misses reach it, so the upstream counters are live.
    upstream = await serveFiles(tmp(), new Map())
    gw = await startGatewayProcess(['--repo', repo, '--log-json', '--upstream', upstream.url, '--upstream-key', pub])
  }, 60_000)
  afterAll(async () => { await gw?.stop(); upstream?.server.close() })

  it('counts every request of nix copy and of a client in the duration histogram, by route and status class', async () => {
    const before = await scrape()
    const mark = gw.output().length
    const store = tmp()
    const copy = await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', pub, '--option', 'substituters', ''], { XDG_CACHE_HOME: tmp() })
    expect(copy.status, copy.stderr).toBe(0)
    // A client's own requests: narinfos there and not, NARs, a HEAD, a path no route takes.
    const hashes = closure.map(p => p.slice('/nix/store/'.length, '/nix/store/'.length + 32))
    const narUrls: string[] = []
    for (const h of hashes) {
      const res = await fetch(`${gw.url}/${h}.narinfo`)
      expect(res.status).toBe(200)
      narUrls.push(/^URL: (.*)$/m.exec(await res.text())![1]!)
    }
    for (let i = 0; i < 3; i++) expect((await fetch(`${gw.url}/${'0'.repeat(31)}${i}.narinfo`)).status).toBe(404)
    let narBytes = 0
    for (const u of narUrls) narBytes += (await (await fetch(`${gw.url}/${u}`)).arrayBuffer()).byteLength
    expect((await fetch(`${gw.url}/nix-cache-info`, { method: 'HEAD' })).status).toBe(200)
    expect((await fetch(`${gw.url}/no/such/route`)).status).toBe(404)
    // Counted and logged at once, when a response closes: once the last is logged, all are counted.
    await gw.waitForLog(/"path":"\/no\/such\/route"/)
    const after = await scrape()

    // What the gateway logged (--log-json) of these requests; Nix 2.8 asks for each narinfo twice, each NAR once.
    const logged: Record<string, number> = {}
    for (const line of gw.output().slice(mark).split('\n').filter(l => l.includes('"message":"request"'))) {
      const { route, status } = JSON.parse(line) as { route: string, status: number }
      if (route !== 'metrics') logged[`${route} ${String(status)[0]}xx`] = (logged[`${route} ${String(status)[0]}xx`] ?? 0) + 1
    }
    const n = closure.length
    expect(logged).toMatchObject({ 'nar 2xx': n + n, 'narinfo 4xx': 3, 'unmatched 4xx': 1 })
    expect(logged['narinfo 2xx']).toBeGreaterThanOrEqual(n + n)
    expect(logged['cacheinfo 2xx']).toBeGreaterThanOrEqual(2)
    // The histogram counted exactly those, and the scrape before them (a scrape is counted once it was sent).
    expect(delta(counts(after.samples), counts(before.samples))).toEqual({ ...logged, 'metrics 2xx': 1 })
    // Each series: buckets cumulative, +Inf = count = the requests counted by status in its class, a plausible sum.
    for (const count of after.samples.filter(s => s.name === 'nixipfs_http_request_duration_seconds_count')) {
      const { route, status_class: cls } = count.labels as { route: string, status_class: string }
      const buckets = after.samples.filter(s => s.name === 'nixipfs_http_request_duration_seconds_bucket' && s.labels.route === route && s.labels.status_class === cls)
      expect(buckets.map(b => b.labels.le)).toEqual([...DURATION_BUCKETS_S.map(String), '+Inf'])
      expect(buckets.map(b => b.value)).toEqual([...buckets.map(b => b.value)].sort((x, y) => x - y))
      expect(buckets.at(-1)!.value).toBe(count.value)
      const byStatus = after.samples.filter(s => s.name === 'nixipfs_http_requests_total' && s.labels.route === route && s.labels.status![0] === cls[0]).reduce((a, s) => a + s.value, 0)
      expect(byStatus, `${route} ${cls}`).toBe(count.value)
      const sum = valueOf(after.samples, 'nixipfs_http_request_duration_seconds_sum', { route, status_class: cls })
      expect(sum).toBeGreaterThan(0)
      expect(sum).toBeLessThan(count.value * 60)
    }
    // Bytes served and blocks by source.
    const narSizes = JSON.parse(execFileSync('nix', ['--extra-experimental-features', 'nix-command', 'path-info', '--json', ...closure], { encoding: 'utf8' })) as Array<{ narSize: number }>
    expect(narBytes).toBe(narSizes.reduce((a, p) => a + p.narSize, 0))
    expect(valueOf(after.samples, 'nixipfs_http_response_bytes_total', { route: 'nar' }) - valueOf(before.samples, 'nixipfs_http_response_bytes_total', { route: 'nar' })).toBe(2 * narBytes)
    expect(valueOf(after.samples, 'nixipfs_blocks_served_total', { source: 'local' })).toBeGreaterThan(valueOf(before.samples, 'nixipfs_blocks_served_total', { source: 'local' }))
    expect(after.samples.filter(s => s.name === 'nixipfs_fetched_bytes_total').map(s => s.labels.source).sort()).toEqual(['bitswap', 'car', 'http', 'upstream'])
    expect(valueOf(after.samples, 'nixipfs_upstream_total', { event: 'narInfoMisses' }) - valueOf(before.samples, 'nixipfs_upstream_total', { event: 'narInfoMisses' })).toBe(3)
    expect(after.samples.filter(s => s.name === 'nixipfs_peers').map(s => `${s.labels.transport} ${s.value}`).sort()).toEqual(['http 0', 'libp2p 0'])
  }, 60_000)

  it('adds no label value for hostile paths, methods and request targets', async () => {
    /** One request of each hostile kind, with fresh random parts; resolves once all were answered. */
    const hostile = async (): Promise<number> => {
      const r = (): string => randomBytes(8).toString('hex')
      const paths = [
        `/${r()}`, `/${r()}/${r()}.narinfo`, `/nar/${r()}.nar`, `/nar/${r()}.nar.xz`, `/ipfs/${r()}`, `/ipns/${r()}`, `/realisations/${r()}.doi`,
        `/log/${r()}`, `/%22%0a%7Broute%3D%22${r()}%22%7D`, `/${r()}?route=${r()}&status=999`, `/${'x'.repeat(4000)}${r()}`, `/stats/${r()}`, `/metrics?${r()}`
      ]
      let sent = 0
      for (const p of paths) { await (await fetch(gw.url + p)).arrayBuffer(); sent++ }
      for (const method of ['POST', 'DELETE', 'PUT', 'PATCH']) { await (await fetch(`${gw.url}/${r()}`, { method, body: method === 'DELETE' ? undefined : r() })).arrayBuffer(); sent++ }
      // Request targets fetch cannot send: absolute form, asterisk form, a WebDAV method.
      for (const line of [`GET http://${r()}.example/${r()} HTTP/1.1`, 'OPTIONS * HTTP/1.1', `PROPFIND /${r()} HTTP/1.1`]) {
        await rawRequest(gw.url, `${line}\r\nhost: x\r\nconnection: close\r\n\r\n`)
        sent++
      }
      return sent
    }
    const series = (samples: Sample[]): string[] => samples.filter(s => s.name.startsWith('nixipfs_http_')).map(seriesKey).sort()
    await hostile()
    const first = await scrape()
    let sent = 0
    for (let i = 0; i < 15; i++) sent += await hostile()
    const last = `/last-${randomBytes(8).toString('hex')}`
    await (await fetch(gw.url + last)).arrayBuffer()
    sent++
    await gw.waitForLog(new RegExp(`"path":"${last}"`))
    const second = await scrape()
    // The same series, only their counts grew: by every request sent (and the first scrape).
    expect(series(second.samples)).toEqual(series(first.samples))
    const total = (e: { samples: Sample[] }): number => valueOf(e.samples, 'nixipfs_http_request_duration_seconds_count')
    expect(total(second) - total(first)).toBe(sent + 1)
    expect(sent).toBeGreaterThan(250)
    for (const s of second.samples.filter(s => s.name.startsWith('nixipfs_http_'))) {
      if (s.labels.route !== undefined) expect(ROUTE_NAMES).toContain(s.labels.route)
      if (s.labels.status_class !== undefined) expect(STATUS_CLASSES).toContain(s.labels.status_class)
    }
    // Bounded: every route name at most once per status class (and so on): well under a hundred series for requests.
    expect(second.samples.filter(s => s.name === 'nixipfs_http_request_duration_seconds_count').length).toBeLessThanOrEqual(ROUTE_NAMES.length * STATUS_CLASSES.length)
  }, 60_000)

  it('serves every metric the Grafana dashboard queries', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ type: string, title: string, targets?: Array<{ expr: string }> }> }
    const live = await scrape()
    const exposed = new Set([...live.samples.map(s => s.name), ...live.types.keys()])
    const queries = dashboardQueries(dashboard)
    const missing = queries.flatMap(q => metricNamesOf(q.expr).filter(name => !exposed.has(name)).map(name => `${q.where}: ${name} (in ${q.expr})`))
    expect(missing).toEqual([])
    // Not vacuous: every panel queries something, and together they read the metrics this issue is about.
    for (const panel of dashboard.panels.filter(p => p.type !== 'row')) {
      expect(panel.targets?.flatMap(t => metricNamesOf(t.expr)).length, panel.title).toBeGreaterThan(0)
    }
    const named = new Set(queries.flatMap(q => metricNamesOf(q.expr)))
    for (const name of ['nixipfs_http_request_duration_seconds_bucket', 'nixipfs_http_requests_total', 'nixipfs_http_response_bytes_total', 'nixipfs_fetched_bytes_total', 'nixipfs_blocks_served_total', 'nixipfs_quorum_refusals_total', 'nixipfs_peers', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes']) {
      expect(named, name).toContain(name)
    }
    // And a name the gateway does not serve would be reported.
    expect(metricNamesOf('rate(nixipfs_http_request_seconds_bucket[5m])').filter(n => !exposed.has(n))).toEqual(['nixipfs_http_request_seconds_bucket'])
  })
})

/** Sends raw request bytes and waits until the server closes the connection. */
async function rawRequest (url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(text))
    let got = ''
    socket.on('data', (b: Buffer) => { got += b.toString() })
    socket.on('close', () => resolve(got))
    socket.on('error', reject)
  })
}
