import { consola } from 'consola'

/** Bytes in binary units: `512 B`, `1.5 MiB`, `2.0 GiB`. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++ }
  return i === 0 ? `${Math.round(bytes)} B` : `${bytes.toFixed(1)} ${units[i]}`
}

/** A duration as `45s`, `3m05s` or `2h07m`. */
function formatDuration (seconds: number): string {
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

/**
 * Progress of long work in bytes: done of the total (when known), rate and
 * time left. On a terminal one status line on stderr is redrawn in place;
 * elsewhere (a pipe, a log, --log-json) a line is logged every few seconds,
 * so a multi-GB path is never silent until it is done.
 */
export class Progress {
  private done = 0
  private total: number | undefined
  private readonly started = Date.now()
  private readonly timer: NodeJS.Timeout
  private readonly tty: boolean
  private drawn = false

  constructor (private readonly what: string, options: { total?: number, tty?: boolean, intervalMs?: number } = {}) {
    this.total = options.total
    this.tty = options.tty ?? (process.stderr.isTTY && process.env.NIXIPFS_LOG_JSON !== '1')
    this.timer = setInterval(() => this.report(), options.intervalMs ?? (this.tty ? 250 : 5_000))
    this.timer.unref()
  }

  /** The total is now known (or grew): shown at once on a terminal. */
  setTotal (bytes: number): void {
    this.total = bytes
    if (this.tty) this.report()
  }

  /** `bytes` more are done. */
  add (bytes: number): void { this.done += bytes }

  /** The status: `1.2 GiB of 3.4 GiB (35%), 48.0 MiB/s, 47s left` (when done: `… in 1m12s`). */
  status (): string {
    const seconds = Math.max(0.001, (Date.now() - this.started) / 1000)
    const rate = this.done / seconds
    const of = this.total === undefined ? '' : ` of ${formatBytes(this.total)} (${this.total === 0 ? 100 : Math.floor(this.done / this.total * 100)}%)`
    const left = this.total !== undefined && this.done >= this.total
      ? ` in ${formatDuration(seconds)}`
      : this.total === undefined || rate === 0 ? '' : `, ${formatDuration((this.total - this.done) / rate)} left`
    return `${formatBytes(this.done)}${of}, ${formatBytes(Math.round(rate))}/s${left}`
  }

  /** Clears the status line so that a log line can be written (on a terminal; elsewhere nothing to clear). */
  clear (): void {
    if (this.drawn) process.stderr.write('\r\x1b[K')
    this.drawn = false
  }

  /** Stops reporting and clears the status line. */
  stop (): void {
    clearInterval(this.timer)
    this.clear()
  }

  private report (): void {
    const line = `${this.what}: ${this.status()}`
    if (!this.tty) { consola.info(line); return }
    process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 80) - 1)}`)
    this.drawn = true
  }
}
