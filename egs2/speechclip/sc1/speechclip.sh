#!/usr/bin/env bash
# SpeechCLIP recipe stages. Every stage is a Python entry point of espnet_speechclip; this script only
# sequences them. Each stage is idempotent, can be rerun alone, and logs to exp/logs/ (training and
# inference log under their experiment folder).
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }

help_message=$(cat <<'HELP'
Usage: ./run.sh [options]
  --stage N / --stop_stage M   stages to run (1 data, 2 audio format, 3 image cache, 4 codebook,
                               5 training, 6 inference, 7 scoring/RESULTS.md, 8 packing)
  --corpus NAME                synth (default, generated here), flickr8k or spokencoco (paths in db.sh)
  --train_config "A [B ...]"   training config(s); one experiment each
  --ngpu N                     GPUs per node (0: CPU; >1: DDP)   --num_nodes N   nodes (>1: espnet2.bin.launch)
  --nj N                       parallel jobs of the data stages, and CPU threads of training (--ngpu 0)
  --inference_nj N             parallel inference jobs (each embeds 1/N of the utterances)
  --tag NAME                   experiment tag (default <corpus>_<config name>)
  --train_args "..."           extra options for espnet_speechclip.bin.speechclip_train
  --inference_args "..."       extra options for espnet_speechclip.bin.speechclip_inference
  --dumpdir DIR --expdir DIR   (dump, exp)
  synth corpus: --synth_n_train --synth_n_dev --synth_n_test --synth_captions --synth_seed
                               --clip_steps (training steps of the stand-in CLIP, default 500)
HELP
)

stage=1
stop_stage=8
corpus=synth
train_config=""
ngpu=0
num_nodes=1
nj=2
inference_nj=2
tag=""
train_args=""
inference_args=""
dumpdir=dump
expdir=exp
synth_n_train=2000
synth_n_dev=200
synth_n_test=200
synth_captions=3
synth_seed=0
clip_steps=500

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

case "${corpus}" in
    synth|flickr8k|spokencoco) ;;
    *) log "unknown --corpus ${corpus} (synth, flickr8k or spokencoco)"; exit 1 ;;
esac
if [ -z "${train_config}" ]; then
    case "${corpus}" in
        synth) train_config="conf/synth/parallel.yaml conf/synth/cascaded.yaml" ;;
        *) train_config="conf/paper/parallel_base.yaml conf/paper/cascaded_base.yaml" ;;
    esac
fi
for c in ${train_config}; do
    [ -f "${c}" ] || { log "train config ${c} does not exist"; exit 1; }
done

info() { python3 -m espnet_speechclip.bin.recipe_info "$@"; }
train_set=$(info set-name "${corpus}" train)
dev_set=$(info set-name "${corpus}" dev)
test_set=$(info set-name "${corpus}" test)
sets="${train_set} ${dev_set} ${test_set}"
logdir=${expdir}/logs
mkdir -p "${logdir}"
device=cpu
[ "${ngpu}" -gt 0 ] && device=cuda
codebook=${dumpdir}/codebook/${train_set}.txt

conf_get() {  # conf_get <yaml> <key.path> : print a config value or its default ("" for none)
    info config-value "$1" "$2"
}
n_configs=$(echo ${train_config} | wc -w)
exp_of() {  # experiment folder of a config
    echo "${expdir}/$(info exp-name "${corpus}" "$1" --tag "${tag}" --n_configs "${n_configs}")"
}
run_logged() {  # run_logged <log> <command...>: show progress and keep a log
    local out=$1; shift
    mkdir -p "$(dirname "${out}")"
    log "$* (log: ${out})"
    "$@" 2>&1 | tee "${out}"
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation (${corpus})"
    run_logged "${logdir}/stage1_data.log" local/data.sh "${corpus}" "${nj}" "${dumpdir}" "${synth_seed}" \
        "${synth_n_train}" "${synth_n_dev}" "${synth_n_test}" "${synth_captions}"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: audio format (16 kHz mono)"
    for s in ${sets}; do
        run_logged "${logdir}/stage2_format_${s}.log" python3 -m espnet_speechclip.bin.format_audio \
            --data_dir "data/${s}" --out_dir "${dumpdir}/raw/${s}" --audio_dir "${dumpdir}/audio/${s}" --nj "${nj}"
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: CLIP image-embedding cache"
    for c in ${train_config}; do
        clip_file=$(conf_get "${c}" clip_conf.pretrained)
        if [ "${corpus}" = synth ] && [ "$(conf_get "${c}" clip_conf.model_name)" = synth-clip ]; then
            # no pretrained CLIP exists for the built-in corpus: train the stand-in once
            run_logged "${logdir}/stage3_synth_clip.log" python3 -m espnet_speechclip.training.synth_clip \
                --train_dir "${dumpdir}/raw/${train_set}" --eval_dir "${dumpdir}/raw/${test_set}" \
                --out "${clip_file}" --steps "${clip_steps}" --nj "${nj}"
        fi
        run_logged "${logdir}/stage3_image_cache_$(basename "${c}" .yaml).log" \
            python3 -m espnet_speechclip.bin.cache_images --config "${c}" --cache_root "${dumpdir}/image_emb" \
            --device "${device}" --num_threads "${nj}" \
            $(for s in ${sets}; do echo "--data_dir ${dumpdir}/raw/${s}"; done)
    done
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: cascaded codebook from the training transcripts"
    run_logged "${logdir}/stage4_codebook.log" python3 -m espnet_speechclip.bin.make_codebook \
        --text "${dumpdir}/raw/${train_set}/text" --out "${codebook}"
fi

emb_of() {  # image-embedding cache folder of a config's CLIP
    python3 -m espnet_speechclip.bin.cache_images --config "$1" --cache_root "${dumpdir}/image_emb" --print_dir
}
model_args() {  # options every run of a config needs: the codebook of this corpus for cascaded models
    case "$(conf_get "$1" model)" in
        cascaded|hybrid|cascaded_plus|hybrid_plus) echo "--model_conf cascaded_conf.codebook=${codebook}" ;;
    esac
}

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: training"
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        emb=$(emb_of "${c}")
        mkdir -p "${exp}"
        # SpeechCLIP+ models counting keywords towards caption lengths read the transcripts
        unit_target=$(conf_get "${c}" model_conf.cascaded_conf.unit_target)
        data=""
        for mode_set in "train:${train_set}" "valid:${dev_set}"; do
            mode=${mode_set%%:*}; s=${mode_set#*:}
            data+=" --${mode}_data_path_and_name_and_type ${dumpdir}/raw/${s}/wav.scp,speech,sound_16k"
            data+=" --${mode}_data_path_and_name_and_type ${dumpdir}/raw/${s}/utt2img,image_id,text"
            data+=" --${mode}_data_path_and_name_and_type ${emb}/${s}.scp,image_emb,npy"
            data+=" --${mode}_shape_file ${dumpdir}/raw/${s}/utt2num_samples"
            if [ "${unit_target}" = caption ]; then
                data+=" --${mode}_data_path_and_name_and_type ${dumpdir}/raw/${s}/text,text,text"
            fi
        done
        dist=""
        threads=${OMP_NUM_THREADS}
        [ "${ngpu}" -gt 0 ] && dist="--use_amp true"  # bf16 on GPUs that support it, else fp16
        [ "${ngpu}" -gt 1 ] && dist="${dist} --multiprocessing_distributed true"
        # on CPU the training process gets --nj threads (path.sh sets 1 for everything else)
        [ "${ngpu}" -eq 0 ] && dist="--use_amp false" && threads=${nj}
        train_cmdline="python3 -m espnet_speechclip.bin.speechclip_train --config ${c} --output_dir ${exp} \
            --ngpu ${ngpu} --resume true ${dist} $(model_args "${c}") ${data} ${train_args}"
        log "training ${exp} (log: ${exp}/train.log)"
        if [ "${num_nodes}" -gt 1 ]; then
            python3 -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${exp}" --log "${exp}/train.log" \
                --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
                --multiprocessing_distributed true -- ${train_cmdline}
        else
            OMP_NUM_THREADS=${threads} ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" ${train_cmdline}
        fi
        grep "epoch results" "${exp}/train.log" | tail -n 1 | cut -c1-300 || true
    done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: inference on ${dev_set} ${test_set}"
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        emb=$(emb_of "${c}")
        for s in ${dev_set} ${test_set}; do
            infer="python3 -m espnet_speechclip.bin.speechclip_inference --config ${exp}/config.yaml \
                --model_file ${exp}/valid.mean_r10.best.pth --data_dir ${dumpdir}/raw/${s} \
                --image_emb_scp ${emb}/img_emb.scp --output_dir ${exp}/decode_${s} --device ${device} \
                --num_splits ${inference_nj} ${inference_args}"
            # inference_nj jobs, each embedding one part of the utterances, then one merge that scores
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${inference_nj}" "${exp}/decode_${s}/logdir/inference.JOB.log" \
                ${infer} --split JOB
            ${decode_cmd} "${exp}/decode_${s}/logdir/merge.log" ${infer} --merge
            log "wrote ${exp}/decode_${s}"
        done
    done
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: scoring"
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        run_logged "${exp}/scoring.log" python3 -m espnet_speechclip.bin.make_results --exp_dir "${exp}" \
            --test_set "${test_set}" --model_file "${exp}/valid.mean_r10.best.pth" --data_root "${dumpdir}/raw"
        cat "${exp}/RESULTS.md"
    done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    log "Stage 8: packing"
    for c in ${train_config}; do
        exp=$(exp_of "${c}")
        run_logged "${exp}/pack.log" python3 -m espnet_speechclip.bin.pack --config "${exp}/config.yaml" \
            --model_file "${exp}/valid.mean_r10.best.pth" --out "${exp}/packed/model.zip" \
            --results_json "${exp}/results.json"
    done
fi
log "Successfully finished. Results: $(for c in ${train_config}; do echo -n "$(exp_of "${c}")/RESULTS.md "; done)"
