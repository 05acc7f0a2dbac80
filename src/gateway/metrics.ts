/** One metric family for the Prometheus text format: its samples by label set. */
export interface MetricFamily {
  name: string
  help: string
  type: 'counter' | 'gauge'
  samples: Array<{ labels?: Record<string, string>, value: number }>
}

const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

/** Formats metric families in the Prometheus text exposition format (version 0.0.4). */
export function formatMetrics (families: MetricFamily[]): string {
  let out = ''
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`
    for (const s of f.samples) {
      const labels = s.labels === undefined ? '' : `{${Object.entries(s.labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',')}}`
      out += `${f.name}${labels} ${Number.isFinite(s.value) ? s.value : 0}\n`
    }
  }
  return out
}

/** Requests and bytes served, by route and status. */
export class HttpMetrics {
  private readonly requests = new Map<string, { route: string, status: string, count: number }>()
  private readonly bytes = new Map<string, number>()
  private readonly errors = new Map<string, number>()

  /** Counts one finished response, and the code of the error it ended with, if any. */
  observe (route: string, status: number, bytes: number, code?: string): void {
    if (code !== undefined) this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
    const key = `${route} ${status}`
    const r = this.requests.get(key) ?? { route, status: String(status), count: 0 }
    r.count++
    this.requests.set(key, r)
    this.bytes.set(route, (this.bytes.get(route) ?? 0) + bytes)
  }

  families (): MetricFamily[] {
    return [
      { name: 'nixipfs_http_requests_total', help: 'HTTP requests answered, by route and status.', type: 'counter', samples: [...this.requests.values()].map(r => ({ labels: { route: r.route, status: r.status }, value: r.count })) },
      { name: 'nixipfs_http_response_bytes_total', help: 'Response body bytes sent, by route.', type: 'counter', samples: [...this.bytes].map(([route, value]) => ({ labels: { route }, value })) },
      { name: 'nixipfs_http_errors_total', help: 'Requests refused or cut short, by error code (ERR_INTEGRITY: bytes that do not match their hash; ERR_NAR_FORMAT: a malformed NAR; ERR_INCONSISTENT_CACHE: a narinfo refused for contradicting another of its cache).', type: 'counter', samples: [...this.errors].map(([code, value]) => ({ labels: { code }, value })) }
    ]
  }
}
