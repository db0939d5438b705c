#!/usr/bin/env bash
# Minimal Kaldi-style option parser, sourced by a script after it has declared its variables:
#   --name value   sets $name (dashes in the name become underscores); the variable must exist
#   --help / -h    prints $help_message and exits
# Anything after the options is left in "$@".
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-no help}"; exit 0 ;;
        --*=*)
            name=${1%%=*}; value=${1#*=}; shift ;;
        --*)
            name=$1
            if [ $# -lt 2 ]; then echo "$0: option $name needs a value" >&2; exit 1; fi
            value=$2; shift 2 ;;
        *) break ;;
    esac
    name=${name#--}; name=${name//-/_}
    if ! declare -p "$name" >/dev/null 2>&1; then
        echo "$0: unknown option --$name (see --help)" >&2; exit 1
    fi
    printf -v "$name" '%s' "$value"
done
true
