#!/usr/bin/env bash
# The README's test command: static checks and unit tests first (seconds),
# then the end-to-end suites against the real local stack (minutes). Ends
# with one line counting every test of both suites.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run format-check
npm run lint
npm run typecheck
scripts/check-dist.sh

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
count() {
	node -e '
    const fs = require("fs")
    let passed = 0, failed = 0, skipped = 0
    for (const file of process.argv.slice(1)) {
      if (!fs.existsSync(file)) continue
      const r = JSON.parse(fs.readFileSync(file, "utf8"))
      passed += r.numPassedTests
      failed += r.numFailedTests
      skipped += r.numPendingTests + r.numTodoTests
    }
    console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
  ' "$results/unit.json" "$results/e2e.json"
}
status=0
npm run test:unit -- --json --outputFile="$results/unit.json" || status=$?
if [ "$status" = 0 ]; then
	scripts/stack.sh up
	npm run test:e2e -- --json --outputFile="$results/e2e.json" || status=$?
fi
count
exit "$status"
