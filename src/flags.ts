import { UsageError } from './errors.js'

/** A command's flags as it declares them to citty (`args`). */
export type FlagDefs = Record<string, { type?: string, alias?: string | readonly string[], default?: unknown, description?: string, valueHint?: string, required?: boolean }>

/** Flags every command takes: read by the CLI itself before the command runs. */
export const globalFlags: FlagDefs = {
  config: { type: 'string', description: 'Config file of flag values (default: $NIXIPFS_CONFIG, else $XDG_CONFIG_HOME/nixipfs/config.json)', valueHint: 'FILE' },
  'log-json': { type: 'boolean', description: 'Log one JSON object a line on stderr (also NIXIPFS_LOG_JSON=1)' },
  help: { type: 'boolean', alias: 'h', description: 'Show this help' }
}

/** Optimal string alignment distance: edits, with a swap of neighbours counting as one (`treshold` → `threshold` is 1). */
function distance (a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}

/** The candidate nearest to `name`, if it is near enough to be what was meant (a typo, a wrong case or separator). */
export function nearest (name: string, candidates: Iterable<string>): string | undefined {
  const norm = (s: string): string => s.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase().replace(/_/g, '-')
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const dist = distance(norm(name), norm(c))
    if (dist < bestDistance) { best = c; bestDistance = dist }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

/** ` (did you mean X?)` when a candidate is near `name`, else nothing. */
export function didYouMean (name: string, candidates: Iterable<string>, format = (c: string): string => c): string {
  const near = nearest(name, candidates)
  return near === undefined ? '' : `; did you mean ${format(near)}?`
}

/**
 * Refuses the first command-line flag that `flags` (with the global ones)
 * does not declare, naming the nearest declared one: citty would silently
 * ignore it, and a misspelled `--threshold` must not weaken trust.
 */
export function checkFlags (command: string, flags: FlagDefs, rawArgs: string[]): void {
  const all = { ...globalFlags, ...flags }
  const named = Object.entries(all).filter(([, d]) => d.type !== 'positional')
  const aliases = new Map(named.flatMap(([name, d]) => [d.alias ?? []].flat().map(a => [a, name] as const)))
  const refuse = (given: string): never => {
    throw new UsageError(`unknown flag ${given} for nixipfs ${command}${didYouMean(given.replace(/^-+/, ''), named.map(([n]) => n), n => `--${n}`)}`)
  }
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!
    if (arg === '--') break
    if (arg.startsWith('--')) {
      const [flag, value] = arg.slice(2).split(/=(.*)/s) as [string, string | undefined]
      const def = all[flag]
      if (def !== undefined && def.type !== 'positional') {
        if (def.type !== 'boolean' && value === undefined) i++ // its value
      } else if (!(flag.startsWith('no-') && all[flag.slice(3)]?.type === 'boolean' && value === undefined)) refuse(`--${flag}`)
    } else if (/^-[^-\d]/.test(arg)) {
      for (const letter of arg.slice(1)) {
        const name = aliases.get(letter)
        if (name === undefined) refuse(`-${letter}`)
        else if (all[name]!.type !== 'boolean' && arg.length === 2) i++
      }
    }
  }
}
