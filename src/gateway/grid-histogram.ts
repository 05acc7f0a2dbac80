import { Histogram, type Registry } from 'prom-client'

type Exposed = Awaited<ReturnType<Histogram['get']>>

/** One label of a grid histogram: its name and every value it can take. */
export interface GridLabel {
  name: string
  values: readonly string[]
}

export interface GridHistogramConfig {
  name: string
  help: string
  /** upper bounds of the buckets, ascending (+Inf is added) */
  buckets: readonly number[]
  rows: GridLabel
  columns: GridLabel
  registers: Registry[]
}

/**
 * A prom-client histogram over a fixed grid of label values (rows × columns),
 * observed without allocating: counts and sums live in typed arrays, indexed
 * by the labels' positions, and are turned into samples only when scraped.
 * The label values are fixed up front, so no input can add a series.
 * Observe with `record`; prom-client's own `observe` and `labels` write a
 * map this class does not expose.
 */
export class GridHistogram extends Histogram<string> {
  private readonly metricName: string
  private readonly metricHelp: string
  private readonly bounds: Float64Array
  private readonly rows: GridLabel
  private readonly columns: GridLabel
  /** per cell, per bucket (the last is +Inf): observations that fell into it */
  private readonly counts: Float64Array
  private readonly sums: Float64Array
  private readonly totals: Float64Array

  constructor (config: GridHistogramConfig) {
    super({ name: config.name, help: config.help, labelNames: [config.rows.name, config.columns.name], buckets: [...config.buckets], registers: config.registers })
    this.metricName = config.name
    this.metricHelp = config.help
    this.bounds = Float64Array.from(config.buckets)
    this.rows = config.rows
    this.columns = config.columns
    const cells = config.rows.values.length * config.columns.values.length
    this.counts = new Float64Array(cells * (config.buckets.length + 1))
    this.sums = new Float64Array(cells)
    this.totals = new Float64Array(cells)
  }

  /** Observes `value` under the row and column at these positions of their label values. */
  record (row: number, column: number, value: number): void {
    const cell = row * this.columns.values.length + column
    let b = 0
    while (b < this.bounds.length && value > this.bounds[b]!) b++
    this.counts[cell * (this.bounds.length + 1) + b]!++
    this.sums[cell]! += value
    this.totals[cell]!++
  }

  override reset (): void {
    // Also called by prom-client's constructor, before the arrays exist.
    this.counts?.fill(0)
    this.sums?.fill(0)
    this.totals?.fill(0)
  }

  override async get (): Promise<Exposed> {
    const values: Exposed['values'] = []
    const width = this.bounds.length + 1
    for (let r = 0; r < this.rows.values.length; r++) {
      for (let c = 0; c < this.columns.values.length; c++) {
        const cell = r * this.columns.values.length + c
        if (this.totals[cell] === 0) continue
        const labels = { [this.rows.name]: this.rows.values[r]!, [this.columns.name]: this.columns.values[c]! }
        let cumulative = 0
        for (let b = 0; b < width; b++) {
          cumulative += this.counts[cell * width + b]!
          values.push({ metricName: `${this.metricName}_bucket`, labels: { ...labels, le: b < this.bounds.length ? this.bounds[b]! : '+Inf' }, value: cumulative })
        }
        values.push({ metricName: `${this.metricName}_sum`, labels, value: this.sums[cell]! }, { metricName: `${this.metricName}_count`, labels, value: this.totals[cell]! })
      }
    }
    // prom-client's types say an enum and a collect function; what it reads (and its own histogram returns) is this.
    return { name: this.metricName, help: this.metricHelp, type: 'histogram', values, aggregator: 'sum' } as unknown as Exposed
  }

  /** What the registry formats: the same samples as `get` (prom-client's own reads its internal map, which this class leaves empty). */
  async getForPromString (): Promise<Exposed> {
    return await this.get()
  }
}
