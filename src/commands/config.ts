import { defineCommand } from 'citty'
import { configPath, envName, layerArgs, loadConfig } from '../config.js'
import { UsageError } from '../errors.js'
import { SUBCOMMANDS as subs } from './subcommands.js'

export default defineCommand({
  meta: {
    name: 'config',
    description: 'Print the effective configuration of a command (or all): each flag\'s value and where it comes from.\n' +
      'Precedence: command line > environment (NIXIPFS_<FLAG>, lists space-separated) > config file > defaults.\n' +
      'The config file is JSON: { "gateway": { "listen": "0.0.0.0:8080", "follow": ["builder-1:AbC…="] }, "*": { "repo": "/srv/nixipfs" } },\n' +
      'at --config FILE, $NIXIPFS_CONFIG, or $XDG_CONFIG_HOME/nixipfs/config.json.\n\n' +
      'Example: nixipfs config gateway'
  },
  args: {
    command: { type: 'positional', required: false, description: 'The command whose configuration to show (default: every command)' },
    config: { type: 'string', description: 'Config file to read', valueHint: 'FILE' }
  },
  // `config COMMAND --flag V` shows what COMMAND would run with given --flag V (the CLI checks them against COMMAND's flags).
  async run ({ args, rawArgs }) {
    const { path, given } = configPath(rawArgs)
    const file = await loadConfig({ path, given })
    const names = args.command !== undefined ? [args.command] : Object.keys(subs).filter(n => n !== 'config')
    if (names.some(n => subs[n] === undefined)) throw new UsageError(`no command ${JSON.stringify(args.command)}; see nixipfs --help`)
    const out: Record<string, Record<string, { value: unknown, from: string }>> = {}
    for (const name of names) {
      const def = await subs[name]!()
      const flags = (def.args ?? {}) as Record<string, { type?: string, default?: unknown }>
      const { origins } = layerArgs(name, name === args.command ? rawArgs : [], flags, file)
      out[name] = {}
      for (const [flag, d] of Object.entries(flags)) {
        if (d.type === 'positional') continue
        const o = origins[flag]
        out[name][flag] = o !== undefined
          ? { value: o.value, from: o.origin === 'environment' ? envName(flag) : o.origin === 'file' ? path : 'command line' }
          : d.default !== undefined || d.type === 'boolean' ? { value: d.default ?? false, from: 'default' } : { value: null, from: 'not set' }
      }
    }
    console.log(JSON.stringify({ file: path, commands: out }, null, 2))
  }
})
