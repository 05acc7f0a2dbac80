#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8'
// A larger young generation: streaming NARs allocates a buffer per block, and
// fewer scavenges cut the CPU a gateway spends per NAR fetched from a peer
// (5–25% in runs of bench/p2p.mjs on a noisy 2-core VM; no change in RSS).
setFlagsFromString('--max-semi-space-size=32')
const { main } = await import('../dist/cli.js')
await main()
