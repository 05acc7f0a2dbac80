import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { FileAccessError, UsageError } from './errors.js'
import { didYouMean, type FlagDefs } from './flags.js'

/** A config file: flag values per command (`"gateway": { "listen": "…", "follow": ["…"] }`) and for all commands (`"*"`). */
export type ConfigFile = Record<string, Record<string, string | number | boolean | string[]>>

/**
 * The config file: `--config FILE`, else `$NIXIPFS_CONFIG`, else
 * `$XDG_CONFIG_HOME/nixipfs/config.json` (`~/.config/…`); `given` when the
 * user named it (then it must exist).
 */
export function configPath (rawArgs: string[], env: NodeJS.ProcessEnv = process.env): { path: string, given: boolean } {
  const i = rawArgs.indexOf('--config')
  if (i >= 0 && rawArgs[i + 1] !== undefined) return { path: rawArgs[i + 1]!, given: true }
  const eq = rawArgs.find(a => a.startsWith('--config='))
  if (eq !== undefined) return { path: eq.slice('--config='.length), given: true }
  if (env.NIXIPFS_CONFIG !== undefined && env.NIXIPFS_CONFIG !== '') return { path: env.NIXIPFS_CONFIG, given: true }
  const xdg = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config')
  return { path: join(xdg, 'nixipfs', 'config.json'), given: false }
}

/** `rawArgs` with `--config FILE` as `--config=FILE`, one word: FILE is then taken for neither a command nor an argument. */
export function joinConfigFlag (rawArgs: string[]): string[] {
  const i = rawArgs.indexOf('--config')
  const end = rawArgs.indexOf('--')
  if (i < 0 || rawArgs[i + 1] === undefined || (end >= 0 && end < i)) return rawArgs
  return [...rawArgs.slice(0, i), `--config=${rawArgs[i + 1]!}`, ...rawArgs.slice(i + 2)]
}

/** Reads the config file; a missing one is an empty config (unless the user named it), a malformed one an error naming it. */
export async function loadConfig ({ path, given }: { path: string, given: boolean }): Promise<ConfigFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    // A misspelt --config must not quietly drop what the file sets (a --threshold, the trusted keys).
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && !given) return {}
    // Not a usage error (whose advice is --help): the file is there and cannot be read.
    if (code === 'EACCES' || code === 'EPERM' || code === 'EISDIR') {
      throw new FileAccessError(`cannot read the config file ${path} (${code}): ${code === 'EISDIR' ? 'it is a directory' : 'this user may not read it'}; fix it, or name another with --config or $NIXIPFS_CONFIG`, { cause: err })
    }
    throw new UsageError(`cannot read the config file ${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch (err) { throw new UsageError(`the config file ${path} is not valid JSON: ${(err as Error).message}`) }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some(v => typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw new UsageError(`the config file ${path} must be an object of commands ("gateway", "publish", … or "*"), each an object of flags`)
  }
  return parsed as ConfigFile
}

/** `~/…` in a config file is under the home directory, as a shell would have it (publish made a directory named ~). */
function homeOf<T> (value: T): T | string {
  return typeof value === 'string' && (value === '~' || value.startsWith('~/')) ? join(homedir(), value.slice(1)) : value
}

/** Every value of a repeatable string flag (`--flag V` or `--flag=V`), in order: citty keeps only the last. */
export function repeatedArg (rawArgs: string[], flag: string): string[] {
  const values: string[] = []
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!
    if (a === '--') break
    if (a === `--${flag}`) {
      const v = rawArgs[i + 1]
      if (v === undefined) throw new UsageError(`--${flag} needs a value`)
      values.push(v)
      i++
    } else if (a.startsWith(`--${flag}=`)) values.push(a.slice(flag.length + 3))
  }
  return values
}

/** Variables nixipfs reads besides `NIXIPFS_<FLAG>` (and the test suite's and benchmarks' knobs, which the CLIs they start inherit). */
const OTHER_VARIABLES = ['CONFIG', 'LOG_LEVEL', 'LOG_JSON', 'STATE', 'CRASH_RUNS', 'FUZZ_RUNS'].map(v => `NIXIPFS_${v}`)

/** The flags a config file or `NIXIPFS_<FLAG>` may set: not positionals, not `--config` itself. */
const settable = (flags: FlagDefs): string[] => Object.keys(flags).filter(f => flags[f]!.type !== 'positional' && f !== 'config')

/**
 * Refuses a config file section that names no command, a key in the
 * sections of `commands` that is no flag of its command, and a `"*"` key or
 * `NIXIPFS_*` variable that is no flag of any command: a misspelled setting
 * is an error, not silently dropped. Every command's flags are loaded only
 * when something is not a flag of `commands` (loading them all is slow).
 */
export async function checkSettings (path: string, file: ConfigFile, env: NodeJS.ProcessEnv, commands: string[], allCommands: string[], flagsOf: (command: string) => Promise<FlagDefs>): Promise<void> {
  for (const section of Object.keys(file)) {
    if (section !== '*' && !allCommands.includes(section)) throw new UsageError(`the config file ${path} has a section "${section}", which is no command${didYouMean(section, [...allCommands, '*'], c => `"${c}"`)}`)
  }
  const known = new Set<string>()
  for (const command of commands) {
    const defs = await flagsOf(command)
    const flags = settable(defs)
    for (const key of Object.keys(file[command] ?? {})) {
      if (!flags.includes(key)) throw new UsageError(`the config file ${path} sets "${key}" for ${command}, which is no flag of nixipfs ${command}${didYouMean(key, flags, f => `"${f}"`)}`)
    }
    for (const section of [command, '*']) {
      for (const [key, value] of Object.entries(file[section] ?? {})) {
        const problem = defs[key] === undefined ? undefined : wrongType(defs[key]!, value)
        if (problem !== undefined) throw new UsageError(`the config file ${path} sets "${key}" ${section === '*' ? 'for every command' : `for ${command}`} to ${JSON.stringify(value)}: ${problem}`)
      }
    }
    for (const f of flags) known.add(f)
  }
  const variables = Object.keys(env).filter(v => v.startsWith('NIXIPFS_') && !OTHER_VARIABLES.includes(v))
  const unknown = (): { keys: string[], vars: string[] } => ({
    keys: Object.keys(file['*'] ?? {}).filter(k => !known.has(k)),
    vars: variables.filter(v => ![...known].some(f => envName(f) === v))
  })
  if (unknown().keys.length + unknown().vars.length === 0) return
  for (const command of allCommands) for (const f of settable(await flagsOf(command))) known.add(f)
  const { keys, vars } = unknown()
  if (keys.length > 0) throw new UsageError(`the config file ${path} sets "${keys[0]}" for every command ("*"), which is no flag of any command${didYouMean(keys[0]!, known, f => `"${f}"`)}`)
  if (vars.length > 0) throw new UsageError(`unknown environment variable ${vars[0]}: it sets no flag of any nixipfs command${didYouMean(vars[0]!, [...[...known].map(envName), ...OTHER_VARIABLES])}`)
}

/** Value hints of flags that name something (a path, an address, a key): a number there is a slip, not a value. */
const NAMING_HINTS = new Set(['DIR', 'FILE', 'URL', 'KEY', 'NAME', 'MULTIADDR', 'CID', 'GLOB'])

/** What is wrong with `value` as a config file's setting of flag `def`, or undefined: a switch takes true or false, others a string (a number where the flag takes one), or a list of them. */
function wrongType (def: FlagDefs[string], value: unknown): string | undefined {
  if (def.type === 'boolean') return typeof value === 'boolean' ? undefined : 'a switch takes true or false'
  const numberOk = def.valueHint === undefined || !def.valueHint.split('|').some(h => NAMING_HINTS.has(h))
  const ok = (v: unknown): boolean => typeof v === 'string' || (numberOk && typeof v === 'number')
  // Every flag read more than once says "repeatable" in its description; the others would take the last value.
  const many = /\brepeatable\b/.test(def.description ?? '')
  if (ok(value) || (many && Array.isArray(value) && value.every(ok))) return undefined
  const one = numberOk ? 'a string or a number' : `a string (${def.valueHint})`
  return many ? `it takes ${one}, or a list of them` : `it takes one value, ${one}`
}

/** Where a flag's value came from. */
export type Origin = 'flag' | 'environment' | 'file'

/** The environment variable of a flag: `--max-cache` → `NIXIPFS_MAX_CACHE`. */
export const envName = (flag: string): string => `NIXIPFS_${flag.toUpperCase().replace(/-/g, '_')}`

/**
 * The flags a command runs with, and where each came from: the command line
 * first, then `NIXIPFS_<FLAG>` (lists space-separated), then the config file
 * (the command's section, then `"*"`); what none sets keeps its default.
 */
export function layerArgs (command: string, rawArgs: string[], flags: Record<string, { type?: string }>, file: ConfigFile, env: NodeJS.ProcessEnv = process.env): { rawArgs: string[], origins: Record<string, { origin: Origin, value: string | boolean | string[] }> } {
  const out = [...rawArgs]
  const origins: Record<string, { origin: Origin, value: string | boolean | string[] }> = {}
  for (const [flag, def] of Object.entries(flags)) {
    if (def.type === 'positional' || flag === 'config') continue
    if (def.type === 'boolean') {
      const given = rawArgs.find(a => a === `--${flag}` || a === `--no-${flag}` || (def as { alias?: string }).alias === a.replace(/^-/, ''))
      if (given !== undefined) { origins[flag] = { origin: 'flag', value: !given.startsWith('--no-') }; continue }
    } else {
      const given = repeatedArg(rawArgs, flag)
      if (given.length > 0) { origins[flag] = { origin: 'flag', value: given.length > 1 ? given : given[0]! }; continue }
    }
    const fromEnv = env[envName(flag)]
    const fromFile = file[command]?.[flag] ?? file['*']?.[flag]
    let value: string | boolean | string[] | undefined
    let origin: Origin
    if (fromEnv !== undefined && fromEnv !== '') {
      origin = 'environment'
      value = def.type === 'boolean' ? !/^(0|false|no)$/i.test(fromEnv) : fromEnv.includes(' ') ? fromEnv.split(/\s+/).filter(v => v !== '') : fromEnv
    } else if (fromFile !== undefined) {
      origin = 'file'
      value = typeof fromFile === 'number' ? String(fromFile) : Array.isArray(fromFile) ? fromFile.map(homeOf) : homeOf(fromFile)
    } else continue
    origins[flag] = { origin, value }
    if (value === true) out.push(`--${flag}`)
    else if (value === false) continue
    else for (const v of Array.isArray(value) ? value : [value]) out.push(`--${flag}`, String(v))
  }
  return { rawArgs: out, origins }
}
