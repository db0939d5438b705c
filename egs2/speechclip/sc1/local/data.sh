#!/usr/bin/env bash
# Stage 1: corpus -> data/<corpus>_{train,dev,test}. Corpus paths come from db.sh.
#   local/data.sh [--python CMD] <corpus> <nj> [synth options: <dumpdir> <seed> <n_train> <n_dev> <n_test> <captions>]
set -euo pipefail
python=python3  # the interpreter (run.sh passes its --python)
if [ "${1:-}" = --python ]; then python=$2; shift 2; fi
corpus=$1; nj=$2
case "${corpus}" in
    synth)
        dumpdir=$3
        ${python} -m espnet_speechclip.bin.make_synth_corpus --out_dir "${dumpdir}/synth_corpus" --data_dir data \
            --seed "$4" --n_train "$5" --n_dev "$6" --n_test "$7" --captions_per_image "$8" --nj "${nj}" ;;
    flickr8k)
        . ./db.sh
        ${python} -m espnet_speechclip.bin.prepare_flickr8k --root "${FLICKR8K}" --out_dir data --nj "${nj}" ;;
    spokencoco)
        . ./db.sh
        ${python} -m espnet_speechclip.bin.prepare_spokencoco --spokencoco "${SPOKENCOCO}" --mscoco "${MSCOCO}" \
            --karpathy "${KARPATHY_COCO}" --out_dir data --nj "${nj}" ;;
    *) echo "$0: unknown corpus ${corpus}" >&2; exit 1 ;;
esac
