#!/usr/bin/env bash
# The README's test command: static checks and unit tests first (seconds),
# then the end-to-end suites against the real local stack (minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
npm run format-check
npm run lint
npm run typecheck
scripts/check-dist.sh
npm run test:unit
scripts/stack.sh up
npm run test:e2e
