import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../atomic.js'

/**
 * The publisher's sequence ledger: the highest record sequence ever signed
 * for each key, kept outside the repo (`$NIXIPFS_STATE`, else
 * `$XDG_STATE_HOME/nixipfs`, else `~/.local/state/nixipfs`) so that restoring
 * the repo from an old backup cannot make a publisher reuse a sequence.
 */
export function ledgerDir (): string {
  const env = process.env.NIXIPFS_STATE
  if (env !== undefined && env !== '') return env
  const xdg = process.env.XDG_STATE_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'state'), 'nixipfs')
}

/** File of the ledger entry for IPNS name `name`. */
export function ledgerPath (name: string): string {
  return join(ledgerDir(), 'sequences', name)
}

/** The highest sequence signed for `name`, or 0n when none is recorded. */
export async function ledgerSequence (name: string): Promise<bigint> {
  const text = await readFile(ledgerPath(name), 'utf8').catch(() => '0')
  return /^\d+$/.test(text.trim()) ? BigInt(text.trim()) : 0n
}

/** Records that `sequence` was signed for `name` (never lowers the entry). */
export async function recordSequence (name: string, sequence: bigint): Promise<void> {
  if (sequence > await ledgerSequence(name)) await writeFileAtomic(ledgerPath(name), `${sequence}\n`)
}
