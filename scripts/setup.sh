#!/usr/bin/env bash
# README command 1: install everything on a fresh Debian 12 machine (or use
# the Docker and buildx a machine already has), start the local stack, and
# run the action's main job on the bundled example, as a runner would.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh install
npm ci --no-audit --no-fund
scripts/stack.sh up
scripts/stack.sh base-debian
node scripts/run-example.mjs
