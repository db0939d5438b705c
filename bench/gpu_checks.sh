#!/usr/bin/env bash
# GPU checks of the training step and the data loader, in one run on a machine with an NVIDIA GPU and
# no internet access needed (about 8 minutes at most: every stage has its own time limit). The GPU machine
# needs python3 with CUDA builds of torch 2.11.0, torchaudio 2.11.0 and torchvision 0.26.0; every other
# package is installed from wheels in the repository's ignored .whl/ folder. Prepare those on a machine
# with internet, with the project's venv and the GPU machine's Python version, from the repository root:
#   mkdir -p .whl
#   .venv/bin/python -m pip freeze --exclude-editable | grep '==' \
#       | grep -vE '^(torch|torchaudio|torchvision|triton)==|^(nvidia|cuda)-' > .whl/requirements.txt
#   .venv/bin/python -m pip wheel --no-deps -w .whl -r .whl/requirements.txt
# then, on the GPU machine, from the repository root (with .whl/ copied along):
#   mkdir -p gpu_out && OUT=$PWD/gpu_out bash bench/gpu_checks.sh
# It writes to $OUT (6 files): env.txt, log.txt (everything printed, tables included),
# train_step_large.json, profile_large.txt (operators of 3 Large steps by GPU time), train_step_base.json,
# data_pipeline.json. Models have random weights (nothing is downloaded). See bench/README.md.
#
# 1. Large parallel and cascaded, bf16, 64 utterances of 6.4 s per step (one GPU's share of the paper's
#    batch 256 on 4 GPUs): step vs the frozen HuBERT-Large bound and vs the authors'-style step,
#    inference, peak memory.
# 2. The same for Base parallel, cascaded and hybrid.
# 3. The real loader (4 workers as in the paper configs, pinned memory, copy to the GPU) over 4096 wavs
#    of 2-6.4 s, against the fastest step of 1-2, and its padding.
#
# REHEARSAL=1 runs the same script on the CPU with the tiny configs and the current Python environment
# (no wheels), in well under a minute; tests/bench/test_bench.py runs it, so the script is tested without a GPU.
set -uo pipefail
: "${OUT:?OUT must name the folder for the results}"
exec > >(tee "$OUT/log.txt") 2>&1

if [ "${REHEARSAL:-0}" = 1 ]; then
    device=cpu
    # what the rehearsal proves is that every stage runs and writes its file: one timed iteration per
    # variant, one config where the GPU run has two
    large=(--config conf/tiny/parallel.yaml)
    base=(--config conf/tiny/parallel.yaml --config conf/tiny/cascaded.yaml --config conf/tiny/hybrid.yaml)
    sizes=(--batch_size 4 --seconds 1.0 --steps 1 --warmup 0)
    loader=(--config conf/tiny/parallel.yaml --batch_size 4 --num_utts 16 --seconds 1.0 --min_seconds 0.3)
    export PYTHONPATH=$PWD
else
    device=cuda
    large=(--config conf/paper/parallel_large.yaml --config conf/paper/cascaded_large.yaml)
    base=(--config conf/paper/parallel_base.yaml --config conf/paper/cascaded_base.yaml
          --config conf/paper/hybrid_base.yaml)
    sizes=(--batch_size 64 --seconds 6.4 --steps 20 --warmup 5)
    loader=(--config conf/paper/parallel_large.yaml --batch_size 64 --num_utts 4096 --seconds 6.4 --min_seconds 2.0)
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# ESPnet imports g2p_en, which calls nltk.download at import time when its two resources are missing;
# on a machine without a network each try can wait out nltk's 120 s timeout. Empty but valid archives
# satisfy that check. Nothing here tokenises with g2p, so their content is never read.
export NLTK_DATA=${TMPDIR:-/tmp}/nltk_offline
python3 -c "
import os, sys, zipfile
for res in ('taggers/averaged_perceptron_tagger_eng', 'corpora/cmudict'):
    path = os.path.join(sys.argv[1], res)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path + '.zip', 'w') as z:
        z.writestr(os.path.basename(res) + '/', '')
" "$NLTK_DATA" || exit 1
{ [ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc
  python3 -c "import sys, torch; print('torch', torch.__version__, torch.cuda.get_device_name() if sys.argv[1] == 'cuda' else 'cpu')" "$device"
} > "$OUT/env.txt"
cat "$OUT/env.txt"
# each bench/train_step.py run prints how long its imports took ("imports: N s") before any step

status=0
step=(python3 bench/train_step.py --device "$device" --dtype bf16 "${sizes[@]}")
echo "== 1. Large, bf16"
timeout 210 "${step[@]}" "${large[@]}" --json "$OUT/train_step_large.json" --profile "$OUT/profile_large.txt" || status=1
echo "== 2. Base, bf16"
timeout 130 "${step[@]}" "${base[@]}" --json "$OUT/train_step_base.json" || status=1
echo "== 3. data pipeline, the config's workers"
consumers=()
for f in "$OUT"/train_step_large.json "$OUT"/train_step_base.json; do
    [ -f "$f" ] && consumers+=(--step_json "$f")
done
timeout 120 python3 bench/data_pipeline.py "${loader[@]}" "${consumers[@]}" --json "$OUT/data_pipeline.json" || status=1
exit $status
