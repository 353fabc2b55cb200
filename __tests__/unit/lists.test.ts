import {parseList} from '../../src/lists.js'

describe('parseList', () => {
  it.each([
    ['a,b', ['a', 'b']],
    ['v1.2.3, 1.2 ,', ['v1.2.3', '1.2']],
    [
      'linux/amd64,\nlinux/arm64/v8 ,\nlinux/arm/v7\n',
      ['linux/amd64', 'linux/arm64/v8', 'linux/arm/v7']
    ],
    ['  mirror.example/app\n\n', ['mirror.example/app']],
    ['"a,b",c', ['a,b', 'c']],
    ['', []],
    [' , ,\n', []]
  ])('%j gives %j', (text, expected) => {
    expect(parseList(text)).toEqual(expected)
  })

  it('keeps commas in values when split on newlines only', () => {
    expect(
      parseList('JOBS=10\nNO_PROXY=localhost,127.0.0.1\n\nEMPTY=\n', true)
    ).toEqual(['JOBS=10', 'NO_PROXY=localhost,127.0.0.1', 'EMPTY='])
  })
})
