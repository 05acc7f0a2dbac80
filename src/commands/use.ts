import { defineCommand } from 'citty'
import { consola } from 'consola'
import { basename } from 'node:path'
import { DEFAULT_LISTEN } from '../constants.js'
import { UsageError } from '../errors.js'
import { appendNixConf, nixConfLines, userNixConfPath } from '../nix/nix-conf.js'
import { repeatedArg, repoArg, repoOf, servedKeys } from './common.js'
import { followedName, parseListen } from './network-args.js'

export default defineCommand({
  meta: {
    name: 'use',
    description: 'Print the nix.conf lines that make Nix use the gateway and trust its caches\' keys (as cachix use); --write appends them to nix.conf.\n\n' +
      'Example: NIX_CONFIG="$(nixipfs use)" nix copy --from http://127.0.0.1:8080 --to /tmp/store /nix/store/…   or   nixipfs use --write'
  },
  args: {
    ...repoArg,
    listen: { type: 'string', default: DEFAULT_LISTEN, description: 'The gateway\'s HTTP address, as given to nixipfs gateway --listen', valueHint: 'HOST:PORT' },
    follow: { type: 'string', description: 'A cache the gateway follows (Nix public key or IPNS name); repeatable', valueHint: 'KEY|NAME' },
    trust: { type: 'string', description: 'A key the gateway trusts; repeatable', valueHint: 'KEY' },
    write: { type: 'boolean', description: 'Append the lines nix.conf lacks to it (root: $NIX_CONF_DIR/nix.conf or /etc/nix/nix.conf, else ~/.config/nix/nix.conf)' },
    'nix-conf': { type: 'string', description: 'With --write: this file instead (e.g. /etc/nix/nix.conf.d/nixipfs.conf, included from nix.conf with !include)', valueHint: 'FILE' }
  },
  async run ({ args, rawArgs }) {
    const { host, port } = parseListen(args.listen)
    const url = `http://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host}:${port}`
    const byName = repeatedArg(rawArgs, 'follow').filter(f => !f.includes(':')).map(followedName)
    const lines = nixConfLines(url, await servedKeys(repoOf(args), rawArgs))
    for (const name of byName) consola.warn(`/ipns/${name} is followed by IPNS name: add its builder's Nix public key to trusted-public-keys too`)
    if (args.write !== true) {
      process.stdout.write(lines.join('\n') + '\n')
      return
    }
    if (args['nix-conf'] === '') throw new UsageError('--nix-conf is empty: give the file to add the lines to, or leave the flag out for the default, ' + userNixConfPath())
    const file = args['nix-conf'] ?? userNixConfPath()
    const added = await appendNixConf(file, lines)
    if (added.length === 0) consola.success(`${file} already has these lines`)
    else consola.success(`added to ${file}:\n${added.map(l => `  ${l}`).join('\n')}`)
    if (basename(file) !== 'nix.conf') consola.info(`Nix reads ${file} only if nix.conf includes it: !include ${file}`)
  }
})
