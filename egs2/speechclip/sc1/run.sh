#!/usr/bin/env bash
# SpeechCLIP on the built-in spoken-shapes corpus by default (no download needed):
#   ./run.sh                                   stages 1-8, parallel and cascaded models, CPU
#   ./run.sh --corpus flickr8k --ngpu 2        Flickr8k (paths in db.sh), paper Base configs, DDP
#   ./run.sh --stage 5 --stop_stage 5 --train_config conf/paper/parallel_large.yaml --ngpu 4
set -euo pipefail
cd "$(dirname "$0")"
./speechclip.sh "$@"
