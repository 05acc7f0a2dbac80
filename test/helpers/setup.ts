import '../../src/shim.js'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// Publishers keep a sequence ledger outside the repo; tests must never touch the user's.
process.env.NIXIPFS_STATE = mkdtempSync(join(tmpdir(), 'nixipfs-state-'))
