#!/usr/bin/env bash
# SpeechCLIP recipe stages. Every stage is a Python entry point of espnet_speechclip; this script only
# sequences them. Each stage is idempotent, can be rerun alone, and logs to exp/logs/ (training and
# inference log under their experiment folder); logs are appended to, so earlier attempts stay.
# Every output records what it was made from and is rebuilt (data, caches) or refused (an experiment
# trained otherwise, a decode of another model or data) when that changes.
set -euo pipefail

# The command line as given, quoted so that it can be pasted back (parse_options.sh consumes "$@"); it
# goes to <expdir>/logs/run.<date>.log.
run_cmdline="./run.sh"
[ $# -eq 0 ] || run_cmdline+=$(printf ' %q' "$@")

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }

help_message=$(cat <<'HELP'
Usage: ./run.sh [options]
Every option is --name value (or --name=value); BOOL is true or false.

General:
  --stage N / --stop_stage M   stages to run (1 data, 2 audio format, 3 image cache, 4 codebook,
                               5 training, 6 inference, 7 scoring/RESULTS.md, 8 packing, 9 Hub upload;
                               10 serves the web page on the packed model until Ctrl-C, only when asked for)
  --skip_data_prep BOOL        skip stages 1-4 (data, audio format, image cache, codebook)
  --skip_train BOOL            skip stage 5 (training); evaluate existing experiments
  --skip_eval BOOL             skip stages 6-7 (inference, scoring)
  --skip_packing BOOL          skip stage 8 (packing into exp/<tag>/packed/model.zip)
  --skip_upload_hf BOOL        skip stage 9 (it runs only with --hf_repo anyway)
  --python CMD                 the Python interpreter every stage runs (default python3, the one path.sh
                               puts first on PATH: the project's .venv when there is one)
  --ngpu N                     GPUs per node (0: CPU; >1: DDP)
  --num_nodes N                nodes (>1: espnet2.bin.launch)
  --nj N                       parallel jobs of the data stages, inference and scoring; on CPU
                               (--ngpu 0) the training threads, shared by configs trained side by side
  --dumpdir DIR                where data, audio and image embeddings go (default dump)
  --expdir DIR                 where experiments go (default exp); every run appends its command line,
                               date and git commit to <expdir>/logs/run.<date>.log

Data preparation (stages 1-4):
  --corpus NAME                synth (default, generated here), flickr8k or spokencoco (paths in db.sh)
  --synth_n_train N --synth_n_dev N --synth_n_test N
                               images of each set of the built-in synth corpus
  --synth_captions N           spoken captions per synth image
  --synth_seed N               seed of the synth corpus (a new seed: new pictures and speech)
  --clip_steps N               training steps of the synth corpus's stand-in CLIP (default 500)

Training (stage 5):
  --train_config "A [B ...]"   training config(s); one experiment each
  --tag NAME                   experiment tag (default <corpus>_<config name>)
  --train_args "..."           extra options for espnet_speechclip.bin.speechclip_train
  --download_model REPO        evaluate a trained model instead of training one: a Hugging Face Hub repo
                               id <namespace>/<name>[@revision] (or a packed .zip), fetched into
                               <expdir>/<REPO>/ (HF_HUB_OFFLINE=1 uses the Hub cache only), e.g.
                               ./run.sh --download_model <namespace>/<name> --skip_train true
  --pretrained_model CKPT      the authors' Lightning checkpoint (atosystem/SpeechCLIP), imported into
                               <expdir>/<tag or corpus_ckpt name>/ in place of training, then evaluated
                               and packed
  --import_args "..."          extra options for espnet_speechclip.bin.import_authors_ckpt (e.g. local
                               HuBERT / CLIP files: --upstream_path F --clip_pretrained F)
  Training logs TensorBoard curves to <expdir>/<tag>/tensorboard/ (tensorboard --logdir exp).

Inference and scoring (stages 6-7):
  --inference_model FILE       checkpoint of the experiment folder that stages 6-8 use
                               (default valid.mean_r10.best.pth: the best by dev mean R@10; e.g. latest.pth,
                               3epoch.pth)
  --inference_nj N             inference jobs per data set (each embeds 1/N of the utterances, then
                               one merges); up to nj inference processes run at a time
  --inference_args "..."       extra options for espnet_speechclip.bin.speechclip_inference
  --mteb BOOL                  stage 7 also runs MTEB's evaluator on the test set (needs the extra:
                               pip install -e '.[mteb]'); RESULTS.md then shows its nDCG@10 beside ours

Packing and upload (stages 8-9):
  --hf_repo NAMESPACE/NAME     stage 9: upload the packed model with its model card to this Hub repo
                               (log in first: hf auth login, or set HF_TOKEN); with several configs each
                               goes to <NAMESPACE/NAME>_<config name>
HELP
)

# General
stage=1                   # first stage to run
stop_stage=9              # last stage; stage 10 (the web page) blocks, so it runs only when asked for
skip_data_prep=false      # skip stages 1-4
skip_train=false          # skip stage 5
skip_eval=false           # skip stages 6-7
skip_packing=false        # skip stage 8
skip_upload_hf=false      # skip stage 9
python=python3            # the interpreter of every stage
ngpu=0                    # GPUs per node (0: CPU)
num_nodes=1               # nodes of a multi-node training
nj=2                      # parallel jobs (and CPU training threads)
dumpdir=dump              # data, audio, image embeddings, codebook
expdir=exp                # experiments and logs

# Data preparation
corpus=synth              # synth, flickr8k or spokencoco
synth_n_train=1600        # synth corpus: images per set, captions per image, seed
synth_n_dev=200
synth_n_test=200
synth_captions=3
synth_seed=0
clip_steps=500            # training steps of the synth corpus's stand-in CLIP

# Training
train_config=""           # training configs (default: the corpus's parallel and cascaded)
tag=""                    # experiment tag (default <corpus>_<config name>)
train_args=""             # extra options of espnet_speechclip.bin.speechclip_train
download_model=""         # a packed model (Hub repo id or .zip) evaluated instead of training
pretrained_model=""       # the authors' checkpoint, imported instead of training
import_args=""            # extra options of espnet_speechclip.bin.import_authors_ckpt

# Inference and scoring
inference_model=valid.mean_r10.best.pth  # checkpoint that stages 6-8 use
inference_nj=1            # inference jobs per data set
inference_args=""         # extra options of espnet_speechclip.bin.speechclip_inference
mteb=false                # stage 7 also runs MTEB's evaluator

# Packing and upload
hf_repo=""                # Hub repo of stage 9 (none: stage 9 is skipped)

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

case "${corpus}" in
    synth|flickr8k|spokencoco) ;;
    *) log "unknown --corpus ${corpus} (synth, flickr8k or spokencoco)"; exit 1 ;;
esac
for flag in skip_data_prep skip_train skip_eval skip_packing skip_upload_hf mteb; do
    case "${!flag}" in
        true|false) ;;
        *) log "--${flag} must be true or false, got '${!flag}'"; exit 1 ;;
    esac
done
runs() {  # runs <stage> [skip flag]: whether this invocation runs stage <stage>
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && { [ $# -lt 2 ] || ! "$2"; }
}
if [ -n "${download_model}" ] && [ -n "${pretrained_model}" ]; then
    log "--download_model and --pretrained_model both replace training: give one"; exit 1
fi
if [ -n "${hf_repo}" ] && ! [[ "${hf_repo}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    log "--hf_repo ${hf_repo} is not a Hub repo id (<namespace>/<name>)"; exit 1
fi
if [ -n "${pretrained_model}" ] && [ ! -f "${pretrained_model}" ]; then
    log "--pretrained_model ${pretrained_model} does not exist"; exit 1
fi
info() { ${python} -m espnet_speechclip.bin.recipe_info "$@"; }
# A model given instead of trained: its one experiment folder stands in for the training configs.
fixed_exp=""
if [ -n "${download_model}" ]; then
    # a local packed model: its file name; a Hub repo id, as ESPnet lays them out: exp/<namespace>/<name>
    # (checked first: a revision with '..' parts must not name a folder outside exp/)
    exp_folder=${tag}
    if [ -z "${exp_folder}" ]; then
        exp_folder=$(info download-exp-name "${download_model}") || exit 1
    fi
    fixed_exp=${expdir}/${exp_folder}
elif [ -n "${pretrained_model}" ]; then
    fixed_exp=${expdir}/${tag:-${corpus}_$(basename "${pretrained_model}" .ckpt)}
fi
if [ -n "${fixed_exp}" ]; then
    [ -n "${train_config}" ] && log "--train_config is not used: the model comes from ${download_model}${pretrained_model}"
    train_config=${fixed_exp}/config.yaml
fi
if [ -z "${train_config}" ]; then
    case "${corpus}" in
        synth) train_config="conf/synth/parallel.yaml conf/synth/cascaded.yaml" ;;
        *) train_config="conf/paper/parallel_base.yaml conf/paper/cascaded_base.yaml" ;;
    esac
fi
if [ -z "${fixed_exp}" ]; then
    for c in ${train_config}; do
        [ -f "${c}" ] || { log "train config ${c} does not exist"; exit 1; }
    done
fi

train_set=$(info set-name "${corpus}" train)
dev_set=$(info set-name "${corpus}" dev)
test_set=$(info set-name "${corpus}" test)
sets="${train_set} ${dev_set} ${test_set}"
logdir=${expdir}/logs
mkdir -p "${logdir}"
# Every run leaves its command line in the log of the day, with what it ran on: rerunning it reproduces it.
{
    echo "# $(date '+%Y-%m-%dT%H:%M:%S') in $(pwd)"
    echo "# git $(git rev-parse HEAD 2>/dev/null || echo '(not a git checkout)')$(
        [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' with local changes')"
    echo "${run_cmdline}"
} >> "${logdir}/run.$(date '+%Y%m%d').log"
device=cpu
[ "${ngpu}" -gt 0 ] && device=cuda
codebook=${dumpdir}/codebook/${train_set}.txt

conf_get() {  # conf_get <yaml> <key.path> : print a config value or its default ("" for none)
    info config-value "$1" "$2"
}
n_configs=$(echo ${train_config} | wc -w)
exp_of() {  # experiment folder of a config
    if [ -n "${fixed_exp}" ]; then echo "${fixed_exp}"; return; fi
    echo "${expdir}/$(info exp-name "${corpus}" "$1" --tag "${tag}" --n_configs "${n_configs}")"
}
model_of() {  # the checkpoint of an experiment that stages 6-8 use (--inference_model), checked
    local m="$1/${inference_model}"
    if [ ! -f "${m}" ]; then
        log "${m} does not exist (--inference_model ${inference_model}); $1 holds:" \
            "$(cd "$1" 2>/dev/null && ls -- *.pth 2>/dev/null | tr '\n' ' ')" >&2
        return 1
    fi
    echo "${m}"
}
run_logged() {  # run_logged <log> <command...>: show progress and keep a log (appended: reruns stay)
    local out=$1; shift
    mkdir -p "$(dirname "${out}")"
    log "$* (log: ${out})"
    echo "# $* (started $(date))" >> "${out}"
    "$@" 2>&1 | tee -a "${out}"
}
failed() {  # failed <log>: show the end of a failed job's log, then stop
    log "failed; the end of $1:"
    tail -n 5 "$1" >&2
    exit 1
}
run_quiet() {  # run_quiet <log> <command...>: run_logged for jobs side by side (output to the log only)
    local out=$1; shift
    mkdir -p "$(dirname "${out}")"
    log "$* (log: ${out})"
    "$@" > "${out}" 2>&1 || failed "${out}"
}
bg_pids=()
bg_run() {  # bg_run <max> <command...>: start the command in the background once fewer than <max> run
    local max=$1; shift
    while [ "$(jobs -rp | wc -l)" -ge "${max}" ]; do sleep 1; done
    "$@" &
    bg_pids+=($!)
}
bg_wait() {  # wait for every bg_run job; fail if any failed (each names its log)
    local pid failed=0
    for pid in "${bg_pids[@]}"; do wait "${pid}" || failed=$((failed + 1)); done
    bg_pids=()
    [ "${failed}" -eq 0 ] || { log "${failed} job(s) failed"; exit 1; }
}

# --download_model / --pretrained_model take the place of training (stage 5). They run first, because
# stage 3 caches the test images with the model's own CLIP; rerunning with --skip_train true reuses the
# experiment folder.
if [ -n "${fixed_exp}" ] && { runs 5 "${skip_train}" || [ ! -f "${fixed_exp}/config.yaml" ]; }; then
    if [ -n "${download_model}" ]; then
        log "Stage 5 replaced: fetching ${download_model} into ${fixed_exp}"
        run_logged "${logdir}/download_model.log" ${python} -m espnet_speechclip.bin.hub_download \
            --model "${download_model}" --exp_dir "${fixed_exp}" --model_name "${inference_model}"
    else
        log "Stage 5 replaced: importing the authors' checkpoint ${pretrained_model} into ${fixed_exp}"
        run_logged "${logdir}/import_authors_ckpt.log" ${python} -m espnet_speechclip.bin.import_authors_ckpt \
            --ckpt "${pretrained_model}" --out_dir "${fixed_exp}" ${import_args}
    fi
fi

if runs 1 "${skip_data_prep}"; then
    log "Stage 1: data preparation (${corpus})"
    run_logged "${logdir}/stage1_data.log" local/data.sh --python "${python}" "${corpus}" "${nj}" "${dumpdir}" "${synth_seed}" \
        "${synth_n_train}" "${synth_n_dev}" "${synth_n_test}" "${synth_captions}"
fi

if runs 2 "${skip_data_prep}"; then
    log "Stage 2: audio format (16 kHz mono)"
    for s in ${sets}; do
        run_logged "${logdir}/stage2_format_${s}.log" ${python} -m espnet_speechclip.bin.format_audio \
            --data_dir "data/${s}" --out_dir "${dumpdir}/raw/${s}" --audio_dir "${dumpdir}/audio/${s}" --nj "${nj}"
    done
fi

if runs 3 "${skip_data_prep}"; then
    log "Stage 3: CLIP image-embedding cache"
    declare -A cached_clips=()
    for c in ${train_config}; do
        # configs with the same clip_conf share one CLIP and its cache: made once
        clip_conf=$(conf_get "${c}" clip_conf)
        [ -n "${cached_clips[${clip_conf}]:-}" ] && continue
        cached_clips[${clip_conf}]=1
        clip_file=$(conf_get "${c}" clip_conf.pretrained)
        if [ -z "${fixed_exp}" ] && [ "${corpus}" = synth ] && \
            [ "$(conf_get "${c}" clip_conf.model_name)" = synth-clip ]; then
            # no pretrained CLIP exists for the built-in corpus: train the stand-in once
            run_logged "${logdir}/stage3_synth_clip.log" ${python} -m espnet_speechclip.bin.train_synth_clip \
                --train_dir "${dumpdir}/raw/${train_set}" --eval_dir "${dumpdir}/raw/${test_set}" \
                --out "${clip_file}" --steps "${clip_steps}" --nj "${nj}"
        fi
        data_dirs=()
        for s in ${sets}; do data_dirs+=(--data_dir "${dumpdir}/raw/${s}"); done
        run_logged "${logdir}/stage3_image_cache_$(basename "${c}" .yaml).log" \
            ${python} -m espnet_speechclip.bin.cache_images --config "${c}" --cache_root "${dumpdir}/image_emb" \
            --device "${device}" --num_threads "${nj}" "${data_dirs[@]}"
    done
fi

if runs 4 "${skip_data_prep}"; then
    log "Stage 4: cascaded codebook from the training transcripts"
    run_logged "${logdir}/stage4_codebook.log" ${python} -m espnet_speechclip.bin.make_codebook \
        --text "${dumpdir}/raw/${train_set}/text" --out "${codebook}"
fi

emb_of() {  # image-embedding cache folder of a config's CLIP
    ${python} -m espnet_speechclip.bin.cache_images --config "$1" --cache_root "${dumpdir}/image_emb" --print_dir
}
model_args=()
set_model_args() {  # options every run of a config needs: the codebook of this corpus for cascaded models
    model_args=()
    case "$(conf_get "$1" model)" in
        cascaded|hybrid|cascaded_plus|hybrid_plus|hybrid_shared) model_args=(--model_conf "cascaded_conf.codebook=${codebook}") ;;
    esac
}

if runs 5 "${skip_train}" && [ -z "${fixed_exp}" ]; then
    log "Stage 5: training"
    # On CPU the configs train side by side, nj / n_configs threads each, when there are cores for all:
    # a training step is mostly small operations (the per-utterance filterbank, the tiny branches), so
    # one process per core gets far more done than two threads sharing one process.
    train_one() {  # train_one <exp> <command...>: one config's training, its log named on failure
        local exp=$1; shift
        ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "$@" || failed "${exp}/train.log"
        log "finished training ${exp}"
    }
    side_by_side=1
    if [ "${ngpu}" -eq 0 ] && [ "${num_nodes}" -eq 1 ] && [ "${nj}" -ge "${n_configs}" ]; then
        side_by_side=${n_configs}
    fi
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        emb=$(emb_of "${c}")
        mkdir -p "${exp}"
        # another training of this folder: refused here, before its train.log is opened anew
        ${python} -m espnet_speechclip.locks "${exp}" || exit 1
        # SpeechCLIP+ models counting keywords towards caption lengths read the transcripts
        unit_target=$(conf_get "${c}" model_conf.cascaded_conf.unit_target)
        data=()
        for mode_set in "train:${train_set}" "valid:${dev_set}"; do
            mode=${mode_set%%:*}; s=${mode_set#*:}
            data+=(--"${mode}"_data_path_and_name_and_type "${dumpdir}/raw/${s}/wav.scp,speech,sound_16k")
            data+=(--"${mode}"_data_path_and_name_and_type "${dumpdir}/raw/${s}/utt2img,image_id,text")
            data+=(--"${mode}"_data_path_and_name_and_type "${emb}/${s}.scp,image_emb,npy")
            data+=(--"${mode}"_shape_file "${dumpdir}/raw/${s}/utt2num_samples")
            if [ "${unit_target}" = caption ]; then
                data+=(--"${mode}"_data_path_and_name_and_type "${dumpdir}/raw/${s}/text,text,text")
            fi
        done
        dist=()
        threads=${OMP_NUM_THREADS}
        [ "${ngpu}" -gt 0 ] && dist=(--use_amp true)  # in the config's amp_dtype (float16 unless it says otherwise)
        [ "${ngpu}" -gt 1 ] && dist+=(--multiprocessing_distributed true)
        # on CPU the training processes share --nj threads (path.sh sets 1 for everything else)
        [ "${ngpu}" -eq 0 ] && dist=(--use_amp false) && threads=$((nj / side_by_side))
        set_model_args "${c}"
        # shellcheck disable=SC2206  # --train_args is a string of options, split into words on purpose
        train_cmdline=(${python} -m espnet_speechclip.bin.speechclip_train --config "${c}" --output_dir "${exp}"
            --ngpu "${ngpu}" --resume true "${dist[@]}" "${model_args[@]}" "${data[@]}" ${train_args})
        log "training ${exp} (log: ${exp}/train.log)"
        if [ "${num_nodes}" -gt 1 ]; then
            ${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${exp}" --log "${exp}/train.log" \
                --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
                --multiprocessing_distributed true -- "${train_cmdline[@]}" || failed "${exp}/train.log"
        else
            OMP_NUM_THREADS=${threads} bg_run "${side_by_side}" train_one "${exp}" "${train_cmdline[@]}"
        fi
    done
    bg_wait
    for c in ${train_config}; do
        grep "epoch results" "$(exp_of "${c}")/train.log" | tail -n 1 | cut -c1-300 || true
    done
fi

if runs 6 "${skip_eval}"; then
    log "Stage 6: inference on ${dev_set} ${test_set}"
    decode_set() {  # decode_set <exp> <set> <inference command>: one decode folder, then a log line
        local exp=$1 s=$2; shift 2
        if [ "${inference_nj}" -gt 1 ]; then
            # inference_nj jobs, each embedding one part of the utterances, then one merge that scores
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${inference_nj}" "${exp}/decode_${s}/logdir/inference.JOB.log" \
                "$@" --num_splits "${inference_nj}" --split JOB || failed "${exp}/decode_${s}/logdir/inference.1.log"
            ${decode_cmd} "${exp}/decode_${s}/logdir/merge.log" "$@" --num_splits "${inference_nj}" --merge \
                || failed "${exp}/decode_${s}/logdir/merge.log"
        else
            ${decode_cmd} --gpu "${ngpu}" "${exp}/decode_${s}/logdir/inference.log" "$@" \
                || failed "${exp}/decode_${s}/logdir/inference.log"
        fi
        log "wrote ${exp}/decode_${s}"
    }
    # The decode folders of all configs and sets are independent: up to nj inference processes at a time
    # (starting a process and loading a model costs about as much as embedding a small set).
    at_once=$((nj / inference_nj > 1 ? nj / inference_nj : 1))
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        model=$(model_of "${exp}")
        emb=$(emb_of "${c}")
        for s in ${dev_set} ${test_set}; do
            # shellcheck disable=SC2206  # --inference_args is a string of options, split on purpose
            bg_run "${at_once}" decode_set "${exp}" "${s}" ${python} -m espnet_speechclip.bin.speechclip_inference \
                --config "${exp}/config.yaml" --model_file "${model}" \
                --data_dir "${dumpdir}/raw/${s}" --image_emb_scp "${emb}/img_emb.scp" \
                --output_dir "${exp}/decode_${s}" --device "${device}" ${inference_args}
        done
    done
    bg_wait
fi

if runs 7 "${skip_eval}"; then
    log "Stage 7: scoring"
    score_exp() {  # score_exp <exp> <model>: (with --mteb true, MTEB's evaluator, then) RESULTS.md
        local exp=$1 model=$2 mteb_args=()
        if "${mteb}"; then
            run_quiet "${exp}/mteb.log" ${python} -m espnet_speechclip.bin.mteb_eval --model "${exp}" \
                --model_file "${model}" --data_dir "${dumpdir}/raw/${test_set}" --output_folder "${exp}/mteb" \
                --device "${device}"
            mteb_args=(--mteb_dir "${exp}/mteb")
        fi
        # an imported release: our value of the dev metric its file was selected by, from stage 6's dev decode
        local dev_args=()
        if [ -f "${exp}/import.json" ] && [ -f "${exp}/decode_${dev_set}/scores.json" ]; then
            dev_args=(--dev_set "${dev_set}")
        fi
        run_quiet "${exp}/scoring.log" ${python} -m espnet_speechclip.bin.make_results \
            --exp_dir "${exp}" --test_set "${test_set}" --model_file "${model}" --data_root "${dumpdir}/raw" \
            "${mteb_args[@]}" "${dev_args[@]}"
    }
    for c in ${train_config}; do  # one process per config, up to nj at a time
        exp=$(exp_of "${c}")
        model=$(model_of "${exp}")
        bg_run "${nj}" score_exp "${exp}" "${model}"
    done
    bg_wait
    for c in ${train_config}; do
        cat "$(exp_of "${c}")/RESULTS.md"
    done
fi

if runs 8 "${skip_packing}"; then
    if [ -n "${download_model}" ]; then
        log "Stage 8: skipped (${download_model} is packed already)"
    else
        log "Stage 8: packing"
        for c in ${train_config}; do  # one process per config, up to nj at a time
            exp=$(exp_of "${c}")
            model=$(model_of "${exp}")
            results=()
            [ -f "${exp}/results.json" ] && results=(--results_json "${exp}/results.json")
            bg_run "${nj}" run_quiet "${exp}/pack.log" ${python} -m espnet_speechclip.bin.pack \
                --config "${exp}/config.yaml" --model_file "${model}" --out "${exp}/packed/model.zip" \
                --dataset "${corpus}" "${results[@]}"
        done
        bg_wait
    fi
fi

if runs 9 "${skip_upload_hf}"; then
    if [ -z "${hf_repo}" ]; then
        log "Stage 9: skipped (no --hf_repo)"
    else
        log "Stage 9: upload to the Hugging Face Hub"
        for c in ${train_config}; do
            exp=$(exp_of "${c}")
            # several models: one repo each, named like their experiments (<repo>_<config name>)
            repo=$(info exp-name "${corpus}" "${c}" --tag "${hf_repo}" --n_configs "${n_configs}")
            [ -f "${exp}/packed/model.zip" ] || { log "${exp}/packed/model.zip is missing: run stage 8"; exit 1; }
            run_logged "${exp}/upload_hf.log" ${python} -m espnet_speechclip.bin.hub_upload \
                --model "${exp}/packed/model.zip" --hf_repo "${repo}"
            log "uploaded: https://huggingface.co/${repo} (./run.sh --download_model ${repo} --skip_train true)"
        done
    fi
fi

# the one command that serves the web page on the packed model with keywords and the test set
demo_cmd=$(info demo-command "${corpus}" "${train_config}" --python "${python}" --tag "${tag}" --expdir "${expdir}" --dumpdir "${dumpdir}")
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    log "Stage 10: web page (Ctrl-C stops it): ${demo_cmd}"
    (eval "${demo_cmd}")
    exit 0
fi
if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Successfully finished stages ${stage}-${stop_stage}. Results: $(for c in ${train_config}; do
        echo -n "$(exp_of "${c}")/RESULTS.md "; done)"
else
    log "Successfully finished stages ${stage}-${stop_stage}."
fi
if [ "${stop_stage}" -ge 8 ]; then
    log "Try the models in a web page (or ./run.sh --stage 10 --stop_stage 10):"
    echo "${demo_cmd}"
fi
