import './shim.js'
import { defineCommand, runCommand, showUsage, type CommandDef } from 'citty'
import { consola } from 'consola'
import { asDiskError } from './disk.js'
import { NixipfsError, UsageError } from './errors.js'
import { configPath, layerArgs, loadConfig } from './config.js'

/** The `nixipfs` command and its lazily loaded subcommands. */
export const cli = defineCommand({
  meta: {
    name: 'nixipfs',
    version: '0.1.0',
    description: 'Publish Nix build outputs to IPFS and serve them back to Nix as a binary cache'
  },
  subCommands: {
    keygen: async () => (await import('./commands/keygen.js')).default,
    publish: async () => (await import('./commands/publish.js')).default,
    gateway: async () => (await import('./commands/gateway.js')).default,
    info: async () => (await import('./commands/info.js')).default,
    ls: async () => (await import('./commands/ls.js')).default,
    'export-car': async () => (await import('./commands/export-car.js')).default,
    republish: async () => (await import('./commands/republish.js')).default,
    mirror: async () => (await import('./commands/mirror.js')).default,
    gc: async () => (await import('./commands/gc.js')).default,
    fsck: async () => (await import('./commands/fsck.js')).default,
    disputes: async () => (await import('./commands/disputes.js')).default,
    config: async () => (await import('./commands/config.js')).default,
    doctor: async () => (await import('./commands/doctor.js')).default,
    verify: async () => (await import('./commands/verify.js')).default,
    import: async () => (await import('./commands/import.js')).default,
    use: async () => (await import('./commands/use.js')).default,
    watch: async () => (await import('./commands/watch.js')).default
  }
})

export async function subCommandOf (rawArgs: string[]): Promise<[CommandDef<any>, CommandDef<any>?]> {
  const subs = cli.subCommands as Record<string, () => Promise<CommandDef<any>>>
  const name = rawArgs.find(a => !a.startsWith('-'))
  const loader = name === undefined ? undefined : subs[name]
  return loader === undefined ? [cli] : [await loader(), cli]
}

/** `rawArgs` with what the environment and the config file set for the command's flags (see layerArgs). */
export async function withConfig (rawArgs: string[]): Promise<string[]> {
  const [cmd, parent] = await subCommandOf(rawArgs)
  if (parent === undefined) return rawArgs
  const name = (cmd.meta as { name?: string } | undefined)?.name ?? ''
  const file = await loadConfig(configPath(rawArgs))
  return layerArgs(name, rawArgs, (cmd.args ?? {}) as Record<string, { type?: string }>, file).rawArgs
}

/** The top-level help: one line per command (each command's --help has the rest and an example). */
async function printCommands (): Promise<void> {
  const subs = cli.subCommands as Record<string, () => Promise<CommandDef<any>>>
  const lines = ['nixipfs — publish Nix build outputs to IPFS and serve them back to Nix as a binary cache', '', 'Usage: nixipfs <command> [options]   (nixipfs <command> --help for details)', '']
  for (const [name, load] of Object.entries(subs)) {
    const meta = (await load()).meta as { description?: string } | undefined
    lines.push(`  ${name.padEnd(10)} ${(meta?.description ?? '').split('\n')[0]}`)
  }
  console.log(lines.join('\n'))
}

/** Logs one JSON object a line on stderr: time, level, message, and the fields logged with it. */
const jsonReporter = {
  log: (entry: { date: Date, type: string, args: unknown[], [field: string]: unknown }): void => {
    // consola puts the fields of a logged object (`consola.info({ message, …fields })`) on the entry itself.
    const { date, type, args, level: _level, tag: _tag, ...fields } = entry
    const objects = args.filter(a => typeof a === 'object' && a !== null && !(a instanceof Error)) as Array<Record<string, unknown>>
    const message = args.filter(a => typeof a !== 'object' || a === null || a instanceof Error).map(a => a instanceof Error ? a.message : String(a)).join(' ')
    process.stderr.write(JSON.stringify({ time: date.toISOString(), level: type, ...(message === '' ? {} : { message }), ...Object.assign({}, ...objects), ...fields }) + '\n')
  }
}

/** Runs the CLI: typed errors print their message and code; usage errors also print usage. */
export async function main (rawArgs = process.argv.slice(2)): Promise<void> {
  // consola goes quiet when it thinks it runs under a test runner; a CLI always reports.
  const level = Number(process.env.NIXIPFS_LOG_LEVEL)
  consola.level = Number.isInteger(level) ? level : 3
  if (rawArgs.includes('--log-json')) {
    rawArgs = rawArgs.filter(a => a !== '--log-json')
    process.env.NIXIPFS_LOG_JSON = '1'
  }
  if (process.env.NIXIPFS_LOG_JSON === '1') consola.setReporters([jsonReporter])
  try {
    if (rawArgs.includes('--help') || rawArgs.includes('-h') || rawArgs.length === 0) {
      const [cmd, parent] = await subCommandOf(rawArgs)
      if (parent === undefined) await printCommands()
      else await showUsage(cmd, parent)
      return
    }
    if (rawArgs.length === 1 && (rawArgs[0] === '--version' || rawArgs[0] === '-v')) {
      console.log('0.1.0')
      return
    }
    await runCommand(cli, { rawArgs: await withConfig(rawArgs) })
  } catch (caught) {
    // A disk that failed under any command is reported like the rest, not as a stack trace.
    const err = caught instanceof NixipfsError ? caught : await asDiskError(caught, (caught as { path?: string }).path ?? 'the repo')
    const e = err as Error & { code?: string }
    if (err instanceof UsageError || e.name === 'CLIError') {
      await showUsage(...await subCommandOf(rawArgs))
    }
    if (err instanceof NixipfsError || e.name === 'CLIError') consola.error(`${e.message} [${e.code ?? 'ERR'}]`)
    else consola.error(err)
    process.exitCode = 1
  }
}
