#!/usr/bin/env bash
# The GPU checks of issue 6 in one run on a lent H100/H200 (about 6 minutes of command time; every
# stage has its own time limit, 8 minutes in all). Prepare once on the development machine, from the
# repository root:
#   ../shared/gpu/wheelhouse.sh        # fills the ignored .whl/ with what the GPU machine lacks
# then call the device tool with
#   command: bash bench/gpu_checks.sh     carry: [".whl"]     timeout_s: 560
# It writes to $OUT (6 files): env.txt, log.txt (everything printed, tables included),
# train_step_large.json, profile_large.txt (operators of 3 Large steps by GPU time: what to speed up
# next), train_step_base.json, data_pipeline.json.
#
# 1. Large parallel and cascaded, bf16, 64 utterances of 6.4 s per step (one GPU's share of the paper's
#    batch 256 on 4 GPUs): step vs frozen HuBERT-Large bound (target >= 0.9x) and vs the authors'-style
#    step (target >= 1.45x), inference, peak memory.
# 2. The same for Base parallel, cascaded and hybrid.
# 3. The real loader (4 workers as in the paper configs, pinned memory, copy to the GPU) over 4096 wavs
#    of 2-6.4 s, against the fastest step of 1-2 (target >= 2x), and its padding.
set -uo pipefail
: "${OUT:?run on the device machine, where OUT names the results folder}"
exec > >(tee "$OUT/log.txt") 2>&1

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } > "$OUT/env.txt"
cat "$OUT/env.txt"
python3 -c "import espnet2, s3prl, open_clip, espnet_speechclip.task" || exit 1

status=0
step=(python3 bench/train_step.py --device cuda --dtype bf16 --batch_size 64 --seconds 6.4 --steps 20 --warmup 5)
echo "== 1. Large, bf16, 64 x 6.4 s"
timeout 210 "${step[@]}" --config conf/paper/parallel_large.yaml --config conf/paper/cascaded_large.yaml \
    --json "$OUT/train_step_large.json" --profile "$OUT/profile_large.txt" || status=1
echo "== 2. Base, bf16, 64 x 6.4 s"
timeout 130 "${step[@]}" --config conf/paper/parallel_base.yaml --config conf/paper/cascaded_base.yaml \
    --config conf/paper/hybrid_base.yaml --json "$OUT/train_step_base.json" || status=1
echo "== 3. data pipeline, 4 workers"
consumers=()
for f in "$OUT"/train_step_large.json "$OUT"/train_step_base.json; do
    [ -f "$f" ] && consumers+=(--step_json "$f")
done
timeout 120 python3 bench/data_pipeline.py --config conf/paper/parallel_large.yaml --batch_size 64 \
    --num_utts 4096 --seconds 6.4 --min_seconds 2.0 "${consumers[@]}" --json "$OUT/data_pipeline.json" || status=1
exit $status
