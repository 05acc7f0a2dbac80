import './shim.js'
import { defineCommand, runCommand, type CommandDef } from 'citty'
import { consola } from 'consola'
import { asDiskError, asFileAccessError } from './disk.js'
import { NixipfsError, UsageError } from './errors.js'
import { checkSettings, configPath, joinConfigFlag, layerArgs, loadConfig } from './config.js'
import { checkFlags, didYouMean, type FlagDefs } from './flags.js'
import { commandHelp, commandsHelp } from './help.js'
import { SUBCOMMANDS as commands } from './commands/subcommands.js'

const meta = {
  name: 'nixipfs',
  version: '0.1.0',
  description: 'Publish Nix build outputs to IPFS and serve them back to Nix as a binary cache'
}

/** The `nixipfs` command and its lazily loaded subcommands. */
export const cli = defineCommand({
  meta,
  subCommands: commands
})

/** The flags a command declares. */
const flagsOf = async (name: string): Promise<FlagDefs> => ((await commands[name]!()).args ?? {}) as FlagDefs

/** The subcommand `rawArgs` names (the first word), if any; a word that is no command is a usage error. */
async function commandOf (rawArgs: string[]): Promise<{ name: string, cmd: CommandDef<any>, rest: string[] } | undefined> {
  const i = rawArgs.findIndex(a => !a.startsWith('-'))
  if (i < 0) return undefined
  const name = rawArgs[i]!
  if (commands[name] === undefined) throw new UsageError(`no command ${JSON.stringify(name)}${didYouMean(name, Object.keys(commands))}`)
  return { name, cmd: await commands[name](), rest: rawArgs.slice(i + 1) }
}

/**
 * Checks the command line, config file and environment against the flags
 * `name` declares (`config COMMAND` takes COMMAND's too, to show what they
 * would give), then returns `rawArgs` with what the environment and the
 * config file set for them (see layerArgs).
 */
async function withConfig (name: string, cmd: CommandDef<any>, rest: string[], rawArgs: string[]): Promise<string[]> {
  const target = name === 'config' ? rest.find(a => !a.startsWith('-') && commands[a] !== undefined) : undefined
  const flags = { ...(target === undefined ? {} : await flagsOf(target)), ...cmd.args as FlagDefs }
  checkFlags(name, flags, rest)
  const config = configPath(rawArgs)
  const file = await loadConfig(config)
  const sections = name === 'config' ? (target === undefined ? Object.keys(commands) : [target]) : [name]
  await checkSettings(config.path, file, process.env, sections, Object.keys(commands), flagsOf)
  return layerArgs(name, rawArgs, cmd.args as FlagDefs, file).rawArgs
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

/**
 * Ends the process quietly when the reader of its output has gone (`nixipfs ls | head`), as a Unix tool killed by
 * SIGPIPE does; when the output cannot be written (`nixipfs ls > /dev/full`), says so in a line and fails.
 */
function exitOnOutputError (): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
      if (stream === process.stdout) process.stderr.write(`nixipfs: writing the output failed (${err.code ?? err.message}) [ERR_OUTPUT]\n`)
      process.exit(1)
    })
  }
}

/** Runs the CLI: typed errors print their message and code; usage errors also where to find the usage. */
export async function main (rawArgs = process.argv.slice(2)): Promise<void> {
  exitOnOutputError()
  rawArgs = joinConfigFlag(rawArgs)
  // consola goes quiet when it thinks it runs under a test runner; a CLI always reports.
  const level = Number(process.env.NIXIPFS_LOG_LEVEL)
  consola.level = Number.isInteger(level) ? level : 3
  if (rawArgs.includes('--log-json')) {
    rawArgs = rawArgs.filter(a => a !== '--log-json')
    process.env.NIXIPFS_LOG_JSON = '1'
  }
  if (process.env.NIXIPFS_LOG_JSON === '1') {
    consola.setReporters([jsonReporter])
    // consola drops a line alike to the five before it within a second (one request line is alike to the next): structured logs keep every one.
    consola.options.throttle = 0
  }
  let name: string | undefined
  try {
    if (rawArgs.length === 1 && (rawArgs[0] === '--version' || rawArgs[0] === '-v')) {
      console.log(meta.version)
      return
    }
    const command = await commandOf(rawArgs)
    name = command?.name
    if (rawArgs.includes('--help') || rawArgs.includes('-h') || command === undefined) {
      const stray = rawArgs.find(a => a !== '--help' && a !== '-h')
      if (command === undefined && stray !== undefined) throw new UsageError(`${stray} is no option of nixipfs itself; name a command first (nixipfs COMMAND ${stray})`)
      console.log(command === undefined ? await commandsHelp(meta, commands) : commandHelp(command.name, command.cmd))
      return
    }
    await runCommand(cli, { rawArgs: await withConfig(command.name, command.cmd, command.rest, rawArgs) })
  } catch (caught) {
    // A disk that failed under any command is reported like the rest, not as a stack trace.
    const err = caught instanceof NixipfsError ? caught : asFileAccessError(await asDiskError(caught, (caught as { path?: string }).path ?? 'the repo'))
    const e = err as Error & { code?: string }
    // citty's own argument errors (a missing positional) are usage errors too.
    const usage = err instanceof UsageError || e.name === 'CLIError'
    if (err instanceof NixipfsError || usage) consola.error(`${e.message} [${usage ? 'ERR_USAGE' : e.code ?? 'ERR'}]`)
    else consola.error(err)
    if (usage) consola.info(`see: nixipfs ${name === undefined ? '' : `${name} `}--help`)
    process.exitCode = 1
  }
}
