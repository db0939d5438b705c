#!/usr/bin/env bash
# Reuse a SpeechCLIP trained by this recipe, whatever its corpus: the Python API, the query command,
# and an ESPnet ASR on its speech encoder (frontend: speechclip) with BPE units, scored by CER.
# Run in egs2/speechclip/sc1 after ./run.sh (stages 1-8), naming the experiment folder:
#   local/reuse_example.sh --exp exp/synth_parallel               # after ./run.sh (make demo)
#   local/reuse_example.sh --exp exp/flickr8k_parallel_base       # after ./run.sh --corpus flickr8k
set -euo pipefail

help_message=$(cat <<'HELP'
Usage: local/reuse_example.sh --exp exp/<corpus>_<config name> [options]
  --exp DIR          a SpeechCLIP experiment folder of this recipe (config.yaml, packed/model.zip)
  --nbpe N           BPE units of the ASR example (default 100)
  --asr_config FILE  ESPnet ASR config (default conf/asr/speechclip_ctc.yaml)
  --asr_args "..."   extra options for espnet_speechclip.bin.asr_train (e.g. "--max_epoch 1")
  --decode_args "..."  extra options for espnet_speechclip.bin.asr_inference
  --ngpu N           GPUs for ASR training and decoding (default 0: CPU)
  --skip_asr BOOL    only the Python API and the query command: no ASR training (default false)
  --python CMD       the Python interpreter (default python3)
HELP
)
exp=""
nbpe=100
asr_config=conf/asr/speechclip_ctc.yaml
asr_args=""
decode_args=""
ngpu=0
skip_asr=false
python=python3
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
[ -n "${exp}" ] || { echo "${help_message}" >&2; exit 1; }
case "${skip_asr}" in true|false) ;; *) echo "$0: --skip_asr must be true or false, got '${skip_asr}'" >&2; exit 1 ;; esac
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }

# The data dirs of the corpus the experiment was trained on, e.g. dump/raw/flickr8k_{train,dev,test}
train=$(${python} -m espnet_speechclip.bin.recipe_info data-dir "${exp}" train)
dev=$(${python} -m espnet_speechclip.bin.recipe_info data-dir "${exp}" dev)
test=$(${python} -m espnet_speechclip.bin.recipe_info data-dir "${exp}" test)
model=${exp}/packed/model.zip  # stage 8's archive; the experiment folder itself works as well

log "Python API: embeddings, retrieval, keywords"
${python} - "${model}" "${test}" <<'EOF'
import sys

import soundfile as sf

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference import Speech2Image

model, test = sys.argv[1:]  # e.g. exp/flickr8k_parallel_base/packed/model.zip dump/raw/flickr8k_test
s2i = Speech2Image.from_pretrained(model, device="cpu")
wavs = list(read_kv(f"{test}/wav.scp").values())
texts = list(read_kv(f"{test}/text").values())
images = sorted(set(read_kv(f"{test}/img.scp").values()))
wave, rate = sf.read(wavs[1])
emb = s2i([wavs[0], (wave, rate)])  # files, 16 kHz arrays or (array, any rate)
print({k: v.shape for k, v in emb.items()})  # {branch: (2, D)}; cascaded: keyword_ids / keyword_scores (2, K)
print(s2i.embed_images(images[:2]).shape, s2i.embed_texts(texts[:1]).shape)  # paths or PIL images
print(s2i.retrieve_images(wavs[0], images, topk=3))  # [Hit(index, item, score), ...] best first
print(s2i.retrieve_speech(images[0], wavs[:10], topk=3))
print(s2i.retrieve_texts(wavs[0], texts[:10], topk=1))
if "cascaded" in s2i.branches:
    print(s2i.keywords(wavs[0]))  # [Keyword(token, id, score), ...]
EOF

log "query from the shell: one test utterance against the test images"
mapfile -t images < <(cut -d ' ' -f 2- "${test}/img.scp" | sort -u)  # paths may hold spaces
${python} -m espnet_speechclip.bin.query --model "${model}" \
    --speech "$(head -n 1 "${test}/wav.scp" | cut -d ' ' -f 2-)" --images "${images[@]}" --topk 5

if "${skip_asr}"; then
    log "ASR example skipped (--skip_asr true)"
    exit 0
fi
bpedir=$(dirname "$(dirname "${train}")")/token_list/$(basename "${train}")_bpe${nbpe}  # dump/token_list/...
log "ESPnet ASR on the SpeechCLIP speech encoder: BPE units (${bpedir})"
mkdir -p "${bpedir}"
cut -d ' ' -f 2- "${train}/text" > "${bpedir}/train.txt"
${python} -m espnet_speechclip.bin.spm_train --input="${bpedir}/train.txt" --vocab_size="${nbpe}" \
    --model_type=bpe --model_prefix="${bpedir}/bpe" --character_coverage=1.0 --hard_vocab_limit=false
${python} -m espnet_speechclip.bin.tokenize_text --token_type bpe --bpemodel "${bpedir}/bpe.model" \
    --field 2- --input "${train}/text" --output "${bpedir}/tokens.txt" --write_vocabulary true \
    --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
asr_exp=exp/asr_$(basename "${exp}")
data=()
for mode_dir in "train:${train}" "valid:${dev}"; do
    mode=${mode_dir%%:*}; dir=${mode_dir#*:}
    data+=(--"${mode}"_data_path_and_name_and_type "${dir}/wav.scp,speech,sound")
    data+=(--"${mode}"_data_path_and_name_and_type "${dir}/text,text,text")
    data+=(--"${mode}"_shape_file "${dir}/utt2num_samples")
done
log "training ${asr_exp} (log: ${asr_exp}/train.log)"
${cuda_cmd} --gpu "${ngpu}" "${asr_exp}/train.log" ${python} -m espnet_speechclip.bin.asr_train \
    --config "${asr_config}" --frontend_conf packed_model="${model}" \
    --token_type bpe --bpemodel "${bpedir}/bpe.model" --token_list "${bpedir}/tokens.txt" \
    "${data[@]}" --output_dir "${asr_exp}" --ngpu "${ngpu}" ${asr_args}
grep "epoch results" "${asr_exp}/train.log" | tail -n 1 | sed 's/\[train\].*\[valid\]/[valid]/' | cut -c1-300
decode=${asr_exp}/decode_$(basename "${test}")
log "decoding ${test} (log: ${decode}/decode.log)"
${decode_cmd} --gpu "${ngpu}" "${decode}/decode.log" ${python} -m espnet_speechclip.bin.asr_inference \
    --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/valid.loss.best.pth" \
    --ctc_weight 1.0 --beam_size 1 --ngpu "${ngpu}" --data_path_and_name_and_type "${test}/wav.scp,speech,sound" \
    --output_dir "${decode}" ${decode_args}
${python} -m espnet_speechclip.bin.score_cer --ref "${test}/text" --hyp "${decode}/1best_recog/text" \
    --json "${decode}/cer.json"
