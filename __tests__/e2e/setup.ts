import {jest} from '@jest/globals'

// End-to-end tests build images under QEMU: minutes, not seconds.
jest.setTimeout(20 * 60 * 1000)
