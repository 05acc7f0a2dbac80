import { PerformanceObserver, constants } from 'node:perf_hooks'
import { getHeapStatistics, setFlagsFromString } from 'node:v8'

const MiB = 1024 * 1024
/** What the heap may grow by beyond what a full GC left, at most, in percent: 75% keeps a large index's memory low. */
const GROWTH = 75
/** What it may always grow by, at least. */
const MIN_ROOM = 32 * MiB
/** V8's own largest growth, in percent (a factor of 4). */
const MAX_GROWTH = 300

/** The heap growth, in percent, after a full GC that left `live` bytes. */
export function heapGrowthPercent (live: number): number {
  return Math.min(MAX_GROWTH, Math.max(GROWTH, Math.ceil(100 * MIN_ROOM / Math.max(live, 1))))
}

let bounded = false

/**
 * Sets V8's heap growth after each full GC to 75% of what it left, but at
 * least 32 MiB.
 *
 * V8's own factor lets garbage pile up to four times the live set once the
 * heap limit is large (24 GiB of RAM make it 4 GiB): a gateway serving a
 * million-entry index peaked at 304 MiB of RSS, with 75% at 232 MiB
 * (bench/index.mjs). But 75% of a small heap is too little room: a gateway
 * serving the bench corpus (18 MiB left after each full GC) started marking
 * again at once and ran a full GC every 70 ms while it streamed NARs, 31 for
 * two copies of the corpus against 2 without the flag, and used 25–35% more
 * CPU (424–466 against 320–392 ticks). A floor of 24 MiB still gave 9–19
 * full GCs, 32 MiB 2–6. A larger floor costs memory where the live heap is
 * small beside large buffers: the million-entry gateway keeps 34 MiB after a
 * full GC, and a floor of 48 MiB raised its peak from 249 to 281 MiB. Growth
 * set when a GC ends holds from the next one on, as V8 reads the flag
 * whenever it sets a limit.
 */
export function boundHeapGrowth (): void {
  if (bounded) return
  bounded = true
  const set = (): void => setFlagsFromString(`--heap-growing-percent=${heapGrowthPercent(getHeapStatistics().used_heap_size)}`)
  set()
  new PerformanceObserver(list => {
    if (list.getEntries().some(e => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) set()
  }).observe({ entryTypes: ['gc'] })
}
