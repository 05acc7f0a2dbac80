#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8'
// A larger young generation: streaming NARs allocates a buffer per block, and
// fewer scavenges cut the CPU a gateway spends per NAR fetched from a peer
// (5–25% in runs of bench/p2p.mjs on a noisy 2-core VM; no change in RSS).
setFlagsFromString('--max-semi-space-size=32')
// V8's heap growth after each full GC: 75% of what it left, at least 32 MiB
// (see src/heap.ts for why both).
const { boundHeapGrowth } = await import('../dist/heap.js')
boundHeapGrowth()
const { main } = await import('../dist/cli.js')
await main()
