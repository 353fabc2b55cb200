// The action's main job on the bundled example (examples/curl, the SRS
// write-up's Debian + curl image) for linux/amd64, linux/arm64/v8 and
// linux/arm/v7: pushed to the local "hub" registry, copied to the "mirror"
// registry that requires a password, then checked over HTTP.

import {join} from 'node:path'
import {ROOT, runAction} from './runner.mjs'

const hub = '127.0.0.1:5001'
const mirror = '127.0.0.1:5002'
const repository = 'ossrs/srs-example'
const passwords = {
  HUB_PASSWORD: 'Main#Pa55 w0rd$',
  MIRROR_PASSWORD: `M1'Pa55"w0rd`
}

const run = runAction(
  {
    image: `${hub}/${repository}`,
    tags: 'v6.0.145\n6',
    platforms: 'linux/amd64,linux/arm64/v8,linux/arm/v7',
    context: join(ROOT, 'examples/curl'),
    mirrors: `${mirror}/${repository}`,
    'registry-auth': [
      `- {registry: "${hub}", username: main-ci, password-env: HUB_PASSWORD}`,
      `- {registry: "${mirror}", username: m1-ci, password-env: MIRROR_PASSWORD}`
    ].join('\n'),
    driver: 'docker',
    network: 'host',
    'qemu-image': '127.0.0.1:5000/test/binfmt-standin:1'
  },
  {env: passwords, echo: true}
)

console.log('\n--- Job summary ---\n' + run.summary)
console.log('--- Outputs ---\n' + JSON.stringify(run.outputs, null, 2))

async function digestOf(registry, username, password) {
  const response = await fetch(
    `http://${registry}/v2/${repository}/manifests/v6.0.145`,
    {
      headers: {
        Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
        Accept:
          'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json'
      }
    }
  )
  const body = await response.json()
  const platforms = (body.manifests ?? []).map(m => m.platform.architecture)
  return {digest: response.headers.get('docker-content-digest'), platforms}
}

const source = await digestOf(hub, 'main-ci', passwords.HUB_PASSWORD)
const copy = await digestOf(mirror, 'm1-ci', passwords.MIRROR_PASSWORD)
console.log(`hub:    ${source.digest} [${source.platforms.join(', ')}]`)
console.log(`mirror: ${copy.digest} [${copy.platforms.join(', ')}]`)
const ok =
  run.status === 0 &&
  run.post.status === 0 &&
  source.digest === run.outputs.digest &&
  copy.digest === source.digest &&
  source.platforms.length === 3
console.log(ok ? 'Example release: OK' : 'Example release: FAILED')
process.exit(ok ? 0 : 1)
