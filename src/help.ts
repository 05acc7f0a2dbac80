import type { CommandDef } from 'citty'
import { globalFlags, type FlagDefs } from './flags.js'

/** Columns help is wrapped to: the terminal's (at most 100), else 80. Plain text, no colours: it is read in pipes, pagers and logs too. */
function width (): number {
  return process.stdout.isTTY ? Math.max(40, Math.min(process.stdout.columns ?? 80, 100)) : 80
}

/** `text` broken at spaces into lines of at most `columns` (a longer word stays whole), later lines prefixed by `indent`. */
export function wrap (text: string, columns: number, indent = ''): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/ +/)) {
    const prefix = lines.length === 0 && line === '' ? '' : indent
    if (line !== '' && line.length + 1 + word.length > columns) { lines.push(line); line = '' }
    line = line === '' ? (lines.length === 0 ? '' : prefix) + word : `${line} ${word}`
  }
  lines.push(line)
  return lines
}

/**
 * A description's lines, wrapped: lines of a paragraph are one text, except
 * examples and indented lines (file contents), which keep their own line and
 * continue indented.
 */
function describe (description: string, columns: number): string[] {
  const out: string[] = []
  for (const paragraph of description.split(/\n\s*\n/)) {
    const lines: string[] = []
    for (const line of paragraph.split('\n')) {
      const own = /^(\s|Example:)/.test(line) || lines.length === 0 || /^(\s|Example:)/.test(lines.at(-1)!)
      if (own) lines.push(line)
      else lines[lines.length - 1] += ` ${line}`
    }
    for (const line of lines) {
      const lead = /^\s*/.exec(line)![0]
      out.push(...wrap(line.trimStart(), columns - lead.length, /^(\s|Example:)/.test(line) ? '    ' : '').map(l => lead + l))
    }
    out.push('')
  }
  return out
}

/** The first sentence of a description: a command's one-line summary. */
function summary (description: string): string {
  const first = description.split(/\n\s*\n/)[0]!.replace(/\s*\n\s*/g, ' ')
  return /^.*?\.(?=\s|$)/.exec(first)?.[0] ?? first
}

/** Option rows (`  -r, --recursive`, `      --repo DIR`) with their descriptions in a column, wrapped. */
function optionRows (flags: FlagDefs, columns: number): string[] {
  const rows = Object.entries(flags).filter(([, d]) => d.type !== 'positional').map(([name, d]) => {
    const alias = [d.alias ?? []].flat()[0]
    const value = d.type === 'boolean' ? '' : ` ${d.valueHint ?? 'VALUE'}`
    const shown = d.default === undefined || d.type === 'boolean' ? '' : ` (default: ${String(d.default)})`
    return [`  ${alias === undefined ? '    ' : `-${alias}, `}--${name}${value}`, `${d.description ?? ''}${shown}`] as const
  })
  return table(rows, columns)
}

/** Two columns: names, and their descriptions wrapped beside them (below a name too long for the column). */
function table (rows: ReadonlyArray<readonly [string, string]>, columns: number): string[] {
  const left = Math.min(Math.max(...rows.map(([l]) => l.length)) + 2, 32)
  const out: string[] = []
  for (const [name, text] of rows) {
    const lines = wrap(text, columns - left)
    if (name.length + 2 > left) out.push(name)
    else out.push(name.padEnd(left) + lines.shift()!)
    out.push(...lines.map(l => ' '.repeat(left) + l))
  }
  return out
}

/** The help of one command: usage, description with examples, arguments and options (the global ones too). */
export function commandHelp (name: string, cmd: CommandDef<any>): string {
  const columns = width()
  const meta = cmd.meta as { description?: string }
  const flags = (cmd.args ?? {}) as FlagDefs
  const positionals = Object.entries(flags).filter(([, d]) => d.type === 'positional')
  const usage = `Usage: nixipfs ${name} [options]${positionals.map(([p, d]) => d.required === true ? ` ${p.toUpperCase()}...` : ` [${p.toUpperCase()}...]`).join('')}`
  const lines = [...wrap(usage, columns, '         '), '', ...describe(meta.description ?? '', columns)]
  if (positionals.length > 0) lines.push('Arguments:', ...table(positionals.map(([p, d]) => [`  ${p.toUpperCase()}`, d.description ?? '']), columns), '')
  const own = Object.fromEntries(Object.entries(flags).filter(([n]) => globalFlags[n] === undefined))
  if (Object.keys(own).some(n => own[n]!.type !== 'positional')) lines.push('Options:', ...optionRows(own, columns), '')
  lines.push('Options of every command:', ...optionRows(globalFlags, columns))
  return lines.join('\n')
}

/** The top-level help: what nixipfs is, its version, one line per command, and the options of every command. */
export async function commandsHelp (meta: { version: string, description: string }, commands: Record<string, () => Promise<CommandDef<any>>>): Promise<string> {
  const columns = width()
  const rows: Array<[string, string]> = []
  for (const [name, load] of Object.entries(commands)) rows.push([`  ${name}`, summary(((await load()).meta as { description?: string }).description ?? '')])
  return [
    ...wrap(`nixipfs ${meta.version}: ${meta.description}`, columns),
    '',
    'Usage: nixipfs COMMAND [options]',
    'nixipfs COMMAND --help shows its options and an example.',
    '',
    'Commands:',
    ...table(rows, columns),
    '',
    'Options of every command:',
    ...optionRows({ ...globalFlags, version: { type: 'boolean', alias: 'v', description: 'Print the version' } }, columns)
  ].join('\n')
}
