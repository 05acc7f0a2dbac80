#!/usr/bin/env node
// V8's heap growth after each full GC: 75% of what it left, at least 32 MiB
// (see src/heap.ts for why both). Flags that size the heap itself, such as
// --max-semi-space-size, are no use here: V8 reads them once, before any
// script runs (set from here, the young generation stayed at 32 MiB).
const { boundHeapGrowth } = await import('../dist/heap.js')
boundHeapGrowth()
const { main } = await import('../dist/cli.js')
await main()
