import { watch as watchDir, type FSWatcher } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { STORE_DIR } from './constants.js'
import { validPaths } from './nix/store.js'
import { parseStoreBaseName } from './nix/store-path.js'

export interface StoreWatchOptions {
  /** how often paths seen but not yet valid are checked again */
  intervalMs: number
  /** publishes a batch of newly valid paths; a failure is the callee's to handle */
  publish: (paths: string[]) => Promise<void>
  log: { info: (m: string) => void, warn: (m: string) => void }
}

/** How often the store directory is listed again, for events the watcher may have missed; the longest wait between checks of a path not valid yet. */
const RESCAN_MS = 60_000

/** When a path not valid yet is checked next, and how long the wait before that was. */
interface Due { at: number, waitMs: number }

/** A store entry that may become a valid path worth publishing: not a lock, a derivation or a check build. */
function candidate (entry: string): boolean {
  if (/\.(lock|drv|chroot|check)$/.test(entry)) return false
  try { parseStoreBaseName(entry); return true } catch { return false }
}

/**
 * Watches /nix/store and calls `publish` with each batch of store paths that
 * appeared after it started (or were being built then) once Nix registered
 * them as valid. Runs beside Nix, so it never holds up a build; one batch is
 * published at a time, and what appears meanwhile makes the next batch.
 */
export async function watchStore (options: StoreWatchOptions): Promise<{ stop: () => Promise<void> }> {
  const known = new Set<string>()
  /**
   * Entries seen that are not valid yet (being built, or left by a failed build), each with when it is checked next.
   * Each check that finds one still invalid doubles its wait, up to RESCAN_MS: Nix 2.8 leaves a failed build's output
   * behind, and checking such leftovers every interval cost a tenth of a core for good. News of the entry or of its
   * lock file (Nix deletes it when the build ends) makes it due at once.
   */
  const pending = new Map<string, Due>()
  const fresh = (): Due => ({ at: 0, waitMs: options.intervalMs })
  const locked: string[] = []
  for (const entry of await readdir(STORE_DIR)) {
    known.add(entry)
    if (entry.endsWith('.lock') && candidate(entry.slice(0, -'.lock'.length))) locked.push(`${STORE_DIR}/${entry.slice(0, -'.lock'.length)}`)
  }
  // A path with a lock file that is not valid yet is being built right now: publish it once it is done
  // (Nix leaves some lock files behind after a build, so a lock alone does not mean that).
  const built = new Set(await validPaths(locked))
  for (const path of locked) if (!built.has(path)) pending.set(path.slice(STORE_DIR.length + 1), fresh())
  /** Notes store entry `entry`: a new candidate becomes pending; `news` of one pending (or of its lock file) makes it due at once. */
  const see = (entry: string, news = true): void => {
    const locks = entry.endsWith('.lock') ? entry.slice(0, -'.lock'.length) : undefined
    if (locks !== undefined) { if (news && pending.has(locks)) pending.set(locks, fresh()); return }
    if (known.has(entry) || !candidate(entry) || (!news && pending.has(entry))) return
    pending.set(entry, fresh())
  }

  let running: Promise<void> | undefined
  let again = false
  const tick = (): void => {
    if (running !== undefined) { again = true; return }
    running = check().catch((err: Error) => options.log.warn(`watch: ${err.message}`)).finally(() => {
      running = undefined
      if (again) { again = false; tick() }
    })
  }
  const check = async (): Promise<void> => {
    const now = Date.now()
    // Only entries seen before the listing began can be judged by it: one that appears while it is taken
    // may be missing from it, though its event was handled before the listing came back (news replaces its Due).
    const due = [...pending].filter(([, when]) => when.at <= now)
    if (due.length === 0) return
    const present = new Set(await readdir(STORE_DIR))
    const unchanged = ([entry, when]: [string, Due]): boolean => pending.get(entry) === when
    for (const item of due) if (!present.has(item[0]) && unchanged(item)) pending.delete(item[0]) // a failed build, cleaned up
    const asked = due.filter(([entry]) => pending.has(entry))
    const valid = new Set(await validPaths(asked.map(([entry]) => `${STORE_DIR}/${entry}`)))
    for (const item of asked) {
      const [entry, when] = item
      if (valid.has(`${STORE_DIR}/${entry}`)) {
        pending.delete(entry)
        known.add(entry)
      } else if (unchanged(item)) {
        when.waitMs = Math.min(when.waitMs * 2, RESCAN_MS)
        when.at = Date.now() + when.waitMs
      }
    }
    if (valid.size > 0) await options.publish([...valid])
  }

  const watcher: FSWatcher = watchDir(STORE_DIR, (event, entry) => {
    if (entry === null) return
    // An entry that came or went: one seen before may be a path deleted and added again (a listing drops it if gone).
    if (event === 'rename') known.delete(entry)
    see(entry)
    tick()
  })
  watcher.on('error', (err: Error) => options.log.warn(`watch: watching ${STORE_DIR} failed (${err.message}); listing it every ${RESCAN_MS / 1000} s instead`))
  const poll = setInterval(tick, options.intervalMs)
  const rescan = setInterval(() => {
    // A listing is no news of the paths already pending (it would make what failed builds left due every minute).
    readdir(STORE_DIR).then(entries => { for (const entry of entries) see(entry, false); tick() }, (err: Error) => options.log.warn(`watch: cannot list ${STORE_DIR}: ${err.message}`))
  }, RESCAN_MS)
  return {
    stop: async () => {
      watcher.close()
      clearInterval(poll)
      clearInterval(rescan)
      await running
    }
  }
}
