#!/usr/bin/env bash
# The GPU check (issue 17) on the device machine: onnxruntime-gpu installed from
# carried parts, the CUDA tests unskipped, and the GPU benchmark, results in $OUT.
#
# The device reaches no network and a call carries at most 64 MiB beside the
# working tree (~29 MiB), so the wheels (.gpuwheel/, made here by
# `.venv/bin/python -m benchmarks.gpu_wheels`) travel over consecutive calls while
# the machine stays warm, each call's command being `bash benchmarks/gpu_check.sh STEP`:
#
#   call 1      receive   carry .gpuwheel/small .gpuwheel/ort/SHA256 .gpuwheel/ort/*.part07
#                         installs the small wheels and gpt2onnx, starts `prepare`
#                         (random checkpoints and exports, minutes) in the background
#   calls 2-8   receive   carry .gpuwheel/ort/*.part00 … part06, one per call
#   call 9      run       onnxruntime-gpu from the parts; CUDA really runs or it stops
#                         here; the CUDA tests; the benchmark once `prepare` is done
#
# Device time: a start (1-2 min), 8 receive calls (seconds each, plus the turns
# between them), then the run call (at most GPU_CHECK_RUN_S=560 s): about 14 of a
# session's 15 minutes. GPU_CHECK_SHAPES=small (in every call) leaves out the 1.5B
# shape, whose checkpoint and three exports take minutes on the device's 16 cores.
#
# GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh rehearse   runs the same steps
# here with the CPU provider (the tests' GPT2ONNX_CUDA_REHEARSAL=cpu, the benchmark's
# --device cpu --quick) and checks that the parts reassemble into the wheel.
set -uo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: gpu_check.sh receive|prepare|run|rehearse}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STATE=${GPU_CHECK_STATE:-/tmp/gpucheck}  # outside the repo: kept between calls while the machine is warm
OUT=${OUT:-$STATE/out}
RUN_S=${GPU_CHECK_RUN_S:-560}  # the last call's budget (a call runs at most 600 s): what is cut past it is named
SMALL_S=${GPU_CHECK_SMALL_S:-200}  # the 124M shape's share of the benchmark; the 1.5B one gets the rest
mkdir -p "$STATE/parts" "$STATE/work" "$OUT"
if [ "$DEVICE" = cuda ]; then
    PY=python3
    export PYTHONPATH="$STATE/ort:$STATE/site"  # before the image's onnxruntime 1.30 (CPU) and transformers 5
    BENCH=(--device cuda --precisions fp16,fp32 --compile-cap-s 120)
    SHAPES=${GPU_CHECK_SHAPES:-small xl}  # "small" alone when the session's device time is short
else
    PY=${PY:-.venv/bin/python}
    BENCH=(--device cpu --quick)
    SHAPES="tiny"  # --quick's one shape
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

log() { echo "gpu_check $STEP: $*"; }

receive() {
    for part in .gpuwheel/ort/*.part* .gpuwheel/ort/SHA256; do
        [ -e "$part" ] && cp "$part" "$STATE/parts/"
    done
    if [ "$DEVICE" = cuda ] && [ -d .gpuwheel/small ] && [ ! -e "$STATE/site/.installed" ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STATE/site" .gpuwheel/small/*.whl || exit 1
        $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$STATE/site" . || exit 1
        # The tests run the console script beside the interpreter (tests/conftest.py's CLI).
        ln -sf "$STATE/site/bin/gpt2onnx" "$(dirname "$(command -v $PY)")/gpt2onnx"
        touch "$STATE/site/.installed"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$STATE/env.txt" 2>&1
        $PY -c "import sys, torch, transformers, tokenizers, numpy; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available(), 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'numpy', numpy.__version__)" >> "$STATE/env.txt" 2>&1
        cat "$STATE/env.txt"
    fi
    if [ ! -e "$STATE/prepare.started" ]; then
        touch "$STATE/prepare.started"
        setsid nohup bash benchmarks/gpu_check.sh prepare > "$STATE/prepare.log" 2>&1 < /dev/null &  # outlives this call
    fi
    log "$(ls "$STATE/parts" | grep -c part) parts here; prepare: $(tail -n 1 "$STATE/prepare.log" 2>/dev/null)"
}

prepare() {
    # Exports run on the CPU (16 cores there) with the image's onnxruntime while the parts arrive,
    # the 124M shape first: its measurement starts while the 1.5B one is still exporting.
    for shape in $SHAPES; do
        $PY -m benchmarks.gpu "${BENCH[@]}" --shapes "$shape" --work "$STATE/work" --prepare-only && touch "$STATE/prepared.$shape"
    done
    touch "$STATE/prepare.done"
}

wait_prepared() {  # until $1's exports are ready, or prepare has stopped
    while [ ! -e "$STATE/prepared.$1" ] && [ ! -e "$STATE/prepare.done" ] && pgrep -f "gpu_check.sh prepare" > /dev/null; do sleep 2; done
    [ -e "$STATE/prepared.$1" ]
}

assemble() {
    [ -e "$STATE/ort/.installed" ] && return 0
    local wheel
    wheel=$(awk '{print $2}' "$STATE/parts/SHA256")
    cat "$STATE/parts/$wheel".part* > "$STATE/$wheel"
    [ "$(sha256sum "$STATE/$wheel" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$STATE/parts/SHA256")" ] \
        || { log "the parts do not make $wheel: $(ls "$STATE/parts" | tr '\n' ' ')"; return 1; }
    if [ "$DEVICE" = cuda ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STATE/ort" "$STATE/$wheel" || return 1
    else
        unzip -tq "$STATE/$wheel" > /dev/null || return 1  # this Python is not the device's 3.12: check the zip only
        mkdir -p "$STATE/ort"
    fi
    touch "$STATE/ort/.installed"
    log "installed $wheel"
}

run() {
    local start=$SECONDS
    assemble 2>&1 | tee "$OUT/run.log" || { log "no onnxruntime-gpu"; return 1; }
    cp "$STATE/env.txt" "$OUT/" 2>/dev/null
    if [ "$DEVICE" = cuda ]; then
        # The image's CUDA 13 libraries (pip's nvidia-* packages, torch's own) for processes that never
        # import torch (the CLI, the server): onnxruntime's preload_dlls may not look where they are.
        LD_LIBRARY_PATH="$($PY -c "import glob, site; print(':'.join(d for r in site.getsitepackages() for d in glob.glob(r + '/nvidia/*/lib') + glob.glob(r + '/nvidia/*/*/lib') + glob.glob(r + '/torch/lib')))"):${LD_LIBRARY_PATH:-}"
        export LD_LIBRARY_PATH
    fi
    # CUDA really runs a session, or nothing else runs: the reason is the one line users see.
    $PY -c "
import onnxruntime as ort
from gpt2onnx.runtime import kv_rows, providers
print('onnxruntime', ort.__version__, ort.__file__, ort.get_available_providers())
if '$DEVICE' == 'cuda':
    problem = providers.cuda_problem()
    print('cuda_problem:', problem)
    if problem is None:
        session = ort.InferenceSession(str(kv_rows.GRAPHS / 'kv_rows_float16.onnx'), providers=[providers.CUDA_EP])
        print('a session runs on', session.get_providers())
        problem = None if session.get_providers()[0] == providers.CUDA_EP else 'the session fell back to the CPU'
    raise SystemExit(f'no CUDA: {problem}' if problem else 0)" 2>&1 | tee -a "$OUT/run.log" || return 1
    local rehearsal=()
    [ "$DEVICE" = cpu ] && rehearsal=(env GPT2ONNX_CUDA_REHEARSAL=cpu)
    # The tests CI skips (same files, same skip reason), and the provider tests that branch on CUDA.
    "${rehearsal[@]}" $PY -m pytest -p no:cacheprovider -q -ra tests/test_cuda.py \
        tests/test_fast_graph.py::test_cuda_keeps_the_cache_on_the_device_and_matches_the_cpu \
        tests/test_load.py::test_cuda_runs_or_says_exactly_why_not tests/test_load.py::test_auto_falls_back_to_cpu_loudly \
        tests/test_cli.py::test_cuda_provider_without_cuda_is_a_clear_failure tests/test_cli.py::test_auto_provider_says_when_it_falls_back \
        2>&1 | tee "$OUT/cuda-tests.log"
    log "tests took $((SECONDS - start)) s"
    cp "$STATE/prepare.log" "$OUT/" 2>/dev/null
    for shape in $SHAPES; do
        wait_prepared "$shape" || { log "$shape: its exports failed (prepare.log)"; continue; }
        local left=$((RUN_S - (SECONDS - start)))
        [ "$shape" = small ] && [ "$left" -gt "$SMALL_S" ] && [ "$SHAPES" != small ] && left=$SMALL_S
        [ "$left" -lt 60 ] && { log "$shape: not measured, $left s left of the call's $RUN_S"; continue; }
        $PY -m benchmarks.gpu "${BENCH[@]}" --shapes "$shape" --work "$STATE/work" --out "$OUT/$shape" --deadline-s "$((left - 30))" 2>&1 | tee -a "$OUT/run.log"
    done
    cp "$STATE/prepare.log" "$OUT/" 2>/dev/null
    log "done in $((SECONDS - start)) s"
}

case "$STEP" in
    receive) receive ;;
    prepare) prepare ;;
    run) run ;;
    rehearse)  # every step here, in order, on the CPU
        [ "$DEVICE" = cpu ] || { echo "rehearse runs with GPU_CHECK_DEVICE=cpu" >&2; exit 2; }
        rm -rf "$STATE/parts" "$STATE/ort" "$STATE/prepare."* "$STATE/prepared."* && mkdir -p "$STATE/parts"
        receive && run ;;
    *) echo "unknown step $STEP: receive, prepare, run or rehearse" >&2; exit 2 ;;
esac
