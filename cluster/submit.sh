#!/usr/bin/env bash
# Submit a command (a sweep) to a Ray cluster as a job, from the repository root:
#
#   cluster/submit.sh [ray job submit options] -- imlsweep sweep run sweeps/quickstart.yaml
#
# The job gets the checkout (--working-dir .) and cluster/runtime_env.yaml. RAY_ADDRESS (default
# http://127.0.0.1:8265, e.g. the tunnel `ray dashboard cluster/aws.yaml` opens) names the cluster.
# The W&B key never goes with the job: a job's runtime_env is readable in `ray job list` and in the head's
# session files. The nodes hold it in a netrc file instead (docs/cluster.md), so WANDB_API_KEY in this
# shell is left out, with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${WANDB_API_KEY:-}" ]]; then
    echo "submit.sh: WANDB_API_KEY is not sent with the job (Ray shows a job's environment to anyone who" \
         "reaches the dashboard); the nodes read W&B credentials from their netrc file, see docs/cluster.md" >&2
fi

exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . \
    --runtime-env cluster/runtime_env.yaml "$@"
