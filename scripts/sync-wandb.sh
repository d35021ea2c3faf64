#!/usr/bin/env bash
# scripts/sync-wandb.sh [ROOT] -- upload the offline W&B runs under ROOT (default: $XITT_ROOT
# or outputs/): single runs under ROOT/wandb/ and every sweep's under ROOT/multirun/*/wandb/.
# Runs already uploaded (wandb leaves a *.wandb.synced marker) are skipped, so it can be run
# again after each grid. Needs network and `wandb login` (or WANDB_API_KEY); `make sync` runs it.
set -euo pipefail

ROOT="${1:-${XITT_ROOT:-outputs}}"
WANDB="${WANDB_BIN:-$(dirname "$0")/../.venv/bin/wandb}"
[[ -x "$WANDB" ]] || WANDB="$(command -v wandb || true)"
[[ -n "$WANDB" ]] || { echo "sync-wandb: the wandb command is not installed" >&2; exit 1; }
[[ -d "$ROOT" ]] || { echo "sync-wandb: no folder $ROOT (nothing was run yet?)" >&2; exit 1; }

pending=()
while IFS= read -r -d '' run; do
  compgen -G "$run/*.wandb.synced" >/dev/null || pending+=("$run")
done < <(find "$ROOT" -type d -name 'offline-run-*' -prune -print0 | sort -z)

if [[ ${#pending[@]} -eq 0 ]]; then
  echo "sync-wandb: no offline runs left to upload under $ROOT"
  exit 0
fi
echo "sync-wandb: uploading ${#pending[@]} offline run(s) under $ROOT"
WANDB_MODE=online "$WANDB" sync "${pending[@]}"
