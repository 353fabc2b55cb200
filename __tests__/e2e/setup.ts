import {afterAll, jest} from '@jest/globals'
import {removeRunDirs} from '../../scripts/runner.mjs'

// End-to-end tests build images under QEMU: minutes, not seconds.
jest.setTimeout(20 * 60 * 1000)

// Each run's folder (its Docker config, RUNNER_TEMP, argv log) goes when
// the test file is done with it.
afterAll(removeRunDirs)
