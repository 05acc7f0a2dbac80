import '../../src/shim.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { removeTmpDirs } from './cli.js'

// Publishers keep a sequence ledger outside the repo; tests must never touch the user's.
process.env.NIXIPFS_STATE = mkdtempSync(join(tmpdir(), 'nixipfs-state-'))

// Registered first, so it runs after the file's own afterAll hooks (which stop the gateways using these directories).
afterAll(() => {
  removeTmpDirs()
  rmSync(process.env.NIXIPFS_STATE!, { recursive: true, force: true })
})
