#!/usr/bin/env bash
# Slurm backend with run.pl's interface: slurm.pl [--gpu N] [--mem X] [--num_threads N] [JOB=1:N] <log> <command>
# Each job is one blocking `srun` (so the recipe waits for it), its output appended to the log (a rerun
# keeps earlier attempts). Several command words are quoted as given, one word is a shell string.
# Extra sbatch/srun options (partition, account, time) come from $SLURM_EXTRA_OPTS.
set -euo pipefail
gpu=0; mem=""; threads=1
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --gpu) gpu=$2 ;;
        --mem) mem=$2 ;;
        --num_threads|--num-threads) threads=$2 ;;
        --max_jobs_run|--max-jobs-run) ;;
        *) echo "slurm.pl: unknown option $1" >&2; exit 1 ;;
    esac
    shift 2
done
range=""
if [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; lo=${BASH_REMATCH[2]}; hi=${BASH_REMATCH[3]}; range=1; shift
fi
log=$1; shift
if [ $# -gt 1 ]; then cmd=$(printf '%q ' "$@"); else cmd=$1; fi
opts=(--cpus-per-task "$threads" ${SLURM_EXTRA_OPTS:-})
[ "$gpu" -gt 0 ] && opts+=(--gres "gpu:$gpu")
[ -n "$mem" ] && opts+=(--mem "$mem")
run_one() {
    local this_log=$1 this_cmd=$2
    mkdir -p "$(dirname "$this_log")"
    echo "# $this_cmd" >> "$this_log"
    echo "# Started at $(date)" >> "$this_log"
    srun "${opts[@]}" bash -c "$this_cmd" >> "$this_log" 2>&1
}
if [ -z "$range" ]; then
    run_one "$log" "$cmd"
else
    pids=()
    for i in $(seq "$lo" "$hi"); do
        run_one "${log//$var/$i}" "${cmd//$var/$i}" & pids+=($!)
    done
    rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
    exit $rc
fi
