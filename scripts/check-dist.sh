#!/usr/bin/env bash
# Fails when dist/ is not what src/ builds to: the committed bundle is what
# the runner executes, so it must never lag behind the source.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx ncc build src/index.ts -o "$out" --source-map --license licenses.txt >/dev/null
if ! diff -r -q dist "$out"; then
  echo "dist/ is out of date: run 'npm run build' and commit dist/." >&2
  exit 1
fi
if grep -q webpackMissingModule dist/index.js; then
  echo "dist/index.js holds webpackMissingModule stubs: an ESM import failed to bundle." >&2
  exit 1
fi
echo "dist/ is up to date"
