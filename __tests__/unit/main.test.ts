import {jest} from '@jest/globals'
import {main} from '../../src/main.js'

describe('main on a runner that is not Linux', () => {
  it('fails at once, naming the runner', async () => {
    const platform = process.platform
    Object.defineProperty(process, 'platform', {value: 'win32'})
    let stdout = ''
    const spy = jest
      .spyOn(process.stdout, 'write')
      .mockImplementation((chunk: string | Uint8Array) => {
        stdout += chunk.toString()
        return true
      })
    try {
      await main()
    } finally {
      spy.mockRestore()
      Object.defineProperty(process, 'platform', {value: platform})
    }
    expect(stdout).toContain(
      '::error::multiarch-action runs on Linux runners only, not win32'
    )
    // Nothing was read or run before the refusal.
    expect(stdout).not.toContain('Reading inputs')
    expect(process.exitCode).toBe(1)
    process.exitCode = 0
  })
})
