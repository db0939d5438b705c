# Environment of the recipe: the project's virtualenv (if present) and the recipe utilities.
_sc1_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_repo_root=$(cd "${_sc1_root}/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${_repo_root}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${_repo_root}/.venv/bin/activate"
fi
export PATH="${_sc1_root}/utils:${PATH}"
export PYTHONUNBUFFERED=1
# One thread per process unless told otherwise: on small CPUs oversubscription slows torch badly.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
