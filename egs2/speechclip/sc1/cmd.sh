# Job runners for the recipe, Kaldi/ESPnet style. Choose a backend:
#   local: run.pl (this machine; the default)
#   slurm: slurm.pl (srun; set SLURM_EXTRA_OPTS for partition/account/time)
cmd_backend=${cmd_backend:-local}

if [ "${cmd_backend}" = local ]; then
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
elif [ "${cmd_backend}" = slurm ]; then
    export train_cmd="slurm.pl"
    export cuda_cmd="slurm.pl"
    export decode_cmd="slurm.pl"
else
    echo "$0: unknown cmd_backend ${cmd_backend} (local or slurm)" >&2
    return 1
fi
