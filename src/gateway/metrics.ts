import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { GridHistogram } from './grid-histogram.js'

/** Upper bounds of the request duration buckets, in seconds: a narinfo takes a millisecond, a large NAR a minute. */
export const DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const

/** The `status_class` label values, by a status's hundreds digit minus one. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

/** What a counter kept elsewhere reads: each label set with its value now. */
export type Samples<L extends string> = Iterable<readonly [Partial<Record<L, string>>, number]>

/** A counter whose values are counts kept elsewhere, read when scraped. */
export function counterOf<L extends string> (registry: Registry, name: string, help: string, labelNames: L[], read: () => Samples<L>): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect () {
      this.reset()
      for (const [labels, value] of read()) this.inc(labels, value)
    }
  })
}

/** A gauge whose values are read when scraped. */
export function gaugeOf<L extends string> (registry: Registry, name: string, help: string, labelNames: L[], read: () => Samples<L> | Promise<Samples<L>>): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect () {
      const samples = await read()
      this.reset()
      for (const [labels, value] of samples) this.set(labels, value)
    }
  })
}

let processRegistry: Registry | undefined

/** The process's own metrics (CPU, memory, heap, event loop lag, GC, handles): collected once per process, however many gateways run in it. */
export function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/** The content type of `metricsText`. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE

/** One gateway's metrics and its process's, in the Prometheus text exposition format (version 0.0.4). */
export async function metricsText (registry: Registry): Promise<string> {
  const [own, process] = await Promise.all([registry.metrics(), processMetrics().metrics()])
  return `${own}\n${process}`
}

/**
 * Requests, their durations and bytes sent, by route (a fixed set of names)
 * and status. Observing a response allocates nothing: counts live in arrays
 * indexed by route, turned into samples when scraped.
 */
export class HttpMetrics {
  private readonly statuses: Array<Map<number, number>>
  private readonly bytes: Float64Array
  private readonly errors = new Map<string, number>()
  private readonly duration: GridHistogram

  /** `routes`: every route name, by the index `observe` is given. */
  constructor (registry: Registry, routes: readonly string[]) {
    this.statuses = routes.map(() => new Map())
    this.bytes = new Float64Array(routes.length)
    this.duration = new GridHistogram({
      name: 'nixipfs_http_request_duration_seconds',
      help: 'Time from a request\'s arrival until its response was sent in full (or cut), by route and status class.',
      buckets: DURATION_BUCKETS_S,
      rows: { name: 'route', values: routes },
      columns: { name: 'status_class', values: STATUS_CLASSES },
      registers: [registry]
    })
    counterOf(registry, 'nixipfs_http_requests_total', 'HTTP requests answered, by route and status.', ['route', 'status'],
      () => this.statuses.flatMap((byStatus, r) => [...byStatus].map(([status, n]) => [{ route: routes[r]!, status: String(status) }, n] as const)))
    counterOf(registry, 'nixipfs_http_response_bytes_total', 'Response body bytes sent, by route.', ['route'],
      () => [...this.bytes].flatMap((n, r) => this.statuses[r]!.size === 0 ? [] : [[{ route: routes[r]! }, n] as const]))
    counterOf(registry, 'nixipfs_http_errors_total', 'Requests refused or cut short, by error code (ERR_INTEGRITY: bytes that do not match their hash; ERR_NAR_FORMAT: a malformed NAR; ERR_INCONSISTENT_CACHE: a narinfo refused for contradicting another of its cache).', ['code'],
      () => [...this.errors].map(([code, n]) => [{ code }, n] as const))
  }

  /** Counts one finished response: its route (an index into the route names), status, body bytes, duration, and the code of the error it ended with, if any. */
  observe (route: number, status: number, bytes: number, seconds: number, code?: string): void {
    const byStatus = this.statuses[route]!
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
    this.bytes[route]! += bytes
    this.duration.record(route, Math.min(4, Math.max(0, Math.floor(status / 100) - 1)), seconds)
    if (code !== undefined) this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
  }
}
