#!/usr/bin/env bash
# The GPU check, one script: the card, the CUDA tests, torch vs JAX parity on the GPU, the GPU
# benchmark (`diffconv speed`, batch 64, 224x224, k = 3, 5, 7, both frameworks) and one layer's
# eager forms side by side. In $OUT (default gpu_out/): log.txt (all that is printed),
# tests.txt (pytest's report) and one speed_*.json per run of `diffconv speed`: eight files at
# most with every part (the device tool brings back eight).
#
#   bash benchmarks/gpu_check.sh                 # on a machine with a CUDA GPU
#   PARTS="tests speed" FRAMEWORKS=jax bash benchmarks/gpu_check.sh       # some parts, in that order
#   PARTS=compiled bash benchmarks/gpu_check.sh                          # torch.compile'd models (not by default)
#   PARTS=speed FRAMEWORKS=jax KERNEL_SIZES=3 bash benchmarks/gpu_check.sh  # JAX at k=3 only
#   DEVICE=cpu BATCH=1 SIZE=64 REPEATS=2 bash benchmarks/gpu_check.sh   # a smoke run of the script
# On an H200 every part but JAX's benchmark took about four minutes together, and JAX's did not
# finish in 110-150 s a model (XLA compiles and autotunes six train steps a model, two per
# kernel size): where one call may run ten minutes, give JAX's benchmark a call of its own
# (PARTS=speed FRAMEWORKS=jax), with fewer kernel sizes if time is short.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}
SIZE=${SIZE:-224}
REPEATS=${REPEATS:-20}
PY=${PYTHON:-python3}
PARTS=${PARTS:-"speed tests parity forms small-forms"}     # the parts to run, in this order
FRAMEWORKS=${FRAMEWORKS:-"torch jax"}
KERNEL_SIZES=${KERNEL_SIZES:-"3 5 7"}       # the benchmark models' kernel sizes (speed, compiled)
TORCH_TIMEOUT=${TORCH_TIMEOUT:-90}      # seconds per model (the H200 ran each in about 20)
JAX_TIMEOUT=${JAX_TIMEOUT:-300}         # seconds per model: XLA compiles (and autotunes) six steps;
                                        # 110-150 s was not enough on the H200
TEST_ARGS=${TEST_ARGS:-}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
# Run from the checkout; JAX must not take most of the GPU's memory up front (torch shares it).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
section() { echo "=== $* ($(date +%T))"; }

section machine
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, jax, flax; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| jax', jax.__version__, jax.devices(), '| flax', flax.__version__)"
} 2>&1

speed() {
  for fw in $FRAMEWORKS; do
    for model in stack unet; do      # one JSON per model: a run cut short keeps the models done
      section speed $fw $model
      timeout "$([ "$fw" = torch ] && echo "$TORCH_TIMEOUT" || echo "$JAX_TIMEOUT")" $PY -m diffconv.cli speed --framework $fw --device "$DEVICE" --models $model \
        --batch "$BATCH" --size "$SIZE" --kernel-sizes $KERNEL_SIZES --repeats "$REPEATS" --json "$OUT/speed_${fw}_$model.json" \
        2>&1 | grep -v -e '%|' -e USDT
    done
  done
}

compiled() {      # both torch models through torch.compile(fullgraph=True), Inductor
  for model in stack unet; do
    section speed torch compiled $model
    timeout 300 $PY -m diffconv.cli speed --framework torch --torch-compile --device "$DEVICE" --models $model \
      --batch "$BATCH" --size "$SIZE" --kernel-sizes $KERNEL_SIZES --repeats "$REPEATS" \
      --json "$OUT/speed_torch_compiled_$model.json" 2>&1 | grep -v -e '%|' -e USDT
  done
}

tests() {
  [ "$DEVICE" = cuda ] || return 0
  section CUDA tests
  timeout 150 $PY -m pytest -q -p no:cacheprovider -rfE --tb=short tests/torch/test_torch_cuda.py $TEST_ARGS \
    > "$OUT/tests.txt" 2>&1
  tail -n 5 "$OUT/tests.txt"
}

parity() {
  section parity on the device
  timeout 75 $PY -m diffconv.cli parity --dtype float64 --device "$DEVICE" --dims 2 --size 70 \
    --kernel-sizes 3 5 2>&1 | tail -n 3
}

forms() {      # one layer at the benchmark's size, every form, then a profile of the chosen one
  section layer forms
  { timeout 40 $PY benchmarks/layer_forms.py --device "$DEVICE" --batch "$BATCH" --size "$SIZE" --channels 32 \
      --kernel-sizes 3 5 7 --repeats "$REPEATS"
    timeout 30 $PY benchmarks/layer_forms.py --device "$DEVICE" --batch "$BATCH" --size "$SIZE" --channels 32 \
      --kernel-sizes 3 --forms auto --repeats 3 --profile
  } 2>&1 | grep -v USDT
}

small-forms() {      # the UNet's inner levels: half and quarter size, 2x and 4x the channels
  section layer forms, inner UNet levels
  for sc in "$((SIZE / 2)) 64" "$((SIZE / 4)) 128"; do
    set -- $sc
    timeout 30 $PY benchmarks/layer_forms.py --device "$DEVICE" --batch "$BATCH" --size "$1" --channels "$2" \
      --kernel-sizes 3 7 --repeats "$REPEATS"
  done 2>&1 | grep -v USDT
}

for part in $PARTS; do
  "$part"
done
section done
