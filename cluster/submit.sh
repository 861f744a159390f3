#!/usr/bin/env bash
# Submit a command (a sweep) to a Ray cluster as a job, from the repository root:
#
#   cluster/submit.sh [ray job submit options] -- imlsweep sweep run sweeps/quickstart.yaml
#
# The job gets the checkout (--working-dir .) and cluster/runtime_env.yaml; WANDB_API_KEY, when set in
# this shell, is added to the job's environment on the way and never written to a file. RAY_ADDRESS
# (default http://127.0.0.1:8265, e.g. the tunnel `ray dashboard cluster/aws.yaml` opens) names the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_env_json=$("${PYTHON:-python3}" - <<'PY'
import json, os, yaml
runtime_env = yaml.safe_load(open("cluster/runtime_env.yaml"))
if os.environ.get("WANDB_API_KEY"):
    runtime_env.setdefault("env_vars", {})["WANDB_API_KEY"] = os.environ["WANDB_API_KEY"]
print(json.dumps(runtime_env))
PY
)

exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . \
    --runtime-env-json "$runtime_env_json" "$@"
