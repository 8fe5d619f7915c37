#!/usr/bin/env bash
# import-linter over the package as it is installed: envs/ and deploy/ become robo_hybrid/envs and
# robo_hybrid/deploy (pyproject's package-dir mapping), which import-linter cannot follow in the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r robo_hybrid "$tmp/robo_hybrid"
cp -r envs "$tmp/robo_hybrid/envs"
cp -r deploy "$tmp/robo_hybrid/deploy"
find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
cp pyproject.toml "$tmp/"
cd "$tmp" && PYTHONPATH="$tmp" lint-imports pyproject.toml
