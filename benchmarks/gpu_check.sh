#!/usr/bin/env bash
# The GPU check, one script sized to a 10-minute call: the card and versions, the CUDA tests of
# both frameworks, torch vs JAX parity on the device, `diffconv speed` for both frameworks on
# every own model at k=3, MONAI's networks (zero vs reflect padding vs DiffConv, torch) with
# batch and size scaled up, then the own models at k=5 while the time budget lasts. Each part
# has its own timeout and the script skips a part that the remaining budget cannot hold, so
# whatever ran is in $OUT (default gpu_out/): log.txt (all that is printed), tests.txt (pytest's
# report), speed_<framework>_k<k>.json and speed_networks_<2d|3d>.json, eight files at most.
#
# The networks need MONAI (pure Python; torch and NumPy only). On a machine that cannot reach a
# package index, install it into the checkout first and carry that folder along:
#   pip install --no-deps --target .venv/bench monai          # 16 MB; .venv/ is git-ignored
#
#   bash benchmarks/gpu_check.sh                                  # on a machine with a CUDA GPU
#   PARTS="speed3" FRAMEWORKS=jax bash benchmarks/gpu_check.sh    # some parts only, in that order
#   PARTS="networks" bash benchmarks/gpu_check.sh                 # MONAI's networks only
#   PARTS="speed3 compiled" bash benchmarks/gpu_check.sh          # torch.compile'd models too (not by default)
#   DEVICE=cpu BATCH=1 SIZE=16 REPEATS=2 BUDGET=300 bash benchmarks/gpu_check.sh   # a smoke run of the script
#   DEVICE=cpu PARTS=networks NET_BATCH=1 NET_SIZE=32 NET3D_SIZE=16 REPEATS=2 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}
SIZE=${SIZE:-224}
REPEATS=${REPEATS:-10}
BUDGET=${BUDGET:-570}                      # seconds for the whole script (the device call allows 600)
PY=${PYTHON:-python3}
PARTS=${PARTS:-"tests parity speed3 networks speed5"}
FRAMEWORKS=${FRAMEWORKS:-"torch jax"}
MODELS=${MODELS:-"stack unet gelu resnet"}
TORCH_SECONDS=${TORCH_SECONDS:-100}        # one framework's models at one kernel size; JAX compiles
JAX_SECONDS=${JAX_SECONDS:-200}            # (and on a GPU autotunes) two train steps a model
NETWORKS=${NETWORKS:-"basicunet resunet segresnet attentionunet"}   # MONAI's 2-d networks
NET_BATCH=${NET_BATCH:-16}                 # 2-d networks: 16 x 1 x 256² (the CPU table: 4 x 96², 64²)
NET_SIZE=${NET_SIZE:-256}
NET3D_BATCH=${NET3D_BATCH:-2}              # dynunet3d: 2 x 1 x 96³ (the CPU table: 1 x 32³)
NET3D_SIZE=${NET3D_SIZE:-96}
NETWORK_SECONDS=${NETWORK_SECONDS:-120}    # one call: the 2-d networks, or the 3-d one
PYDEPS=${PYDEPS:-.venv/bench}              # a --target install of MONAI, used where it exists
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
# Run from the checkout; JAX must not take most of the GPU's memory up front (torch shares it).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
[ -d "$PYDEPS" ] && export PYTHONPATH="$PYTHONPATH:$PWD/$PYDEPS"
section() { echo "=== $* ($(date +%T), ${SECONDS}s of ${BUDGET}s)"; }
# fits SECONDS_NEEDED: whether the budget still holds a part that may take that long
fits() { [ $((SECONDS + $1)) -le "$BUDGET" ] || { echo "--- skipped: needs ${1}s, ${SECONDS}s of ${BUDGET}s used"; return 1; }; }
# run LIMIT CMD...: CMD under `timeout`, cut to what the budget has left
run() { local limit=$1; shift; local left=$((BUDGET - SECONDS)); [ "$left" -lt "$limit" ] && limit=$left
        timeout "$limit" "$@"; local rc=$?; [ $rc -eq 124 ] && echo "--- timed out after ${limit}s"; return $rc; }

section machine
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, jax, flax; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| jax', jax.__version__, jax.devices(), '| flax', flax.__version__)"
} 2>&1

tests() {          # the CUDA tests of both frameworks (they skip themselves without a GPU)
  [ "$DEVICE" = cuda ] || { echo "--- tests: only on cuda"; return 0; }
  section CUDA tests
  fits 60 || return 0
  run 120 $PY -m pytest -q -p no:cacheprovider -rfE --tb=short tests/torch/test_torch_cuda.py tests/jax/test_gpu.py \
    > "$OUT/tests.txt" 2>&1
  tail -n 5 "$OUT/tests.txt"
}

parity() {         # torch on the device against JAX on its default backend, float64
  section parity on the device
  fits 30 || return 0
  run 75 $PY -m diffconv.lab.cli parity --dtype float64 --device "$DEVICE" --dims 2 --size 70 --kernel-sizes 3 5 \
    2>&1 | tail -n 3
}

speed() {          # speed K [extra args]: both frameworks, every model, kernel size K
  local k=$1 per; shift
  for fw in $FRAMEWORKS; do
    per=$([ "$fw" = torch ] && echo "$TORCH_SECONDS" || echo "$JAX_SECONDS")
    section speed $fw k=$k
    fits "$per" || continue
    run "$per" $PY -m diffconv.lab.cli speed --framework "$fw" --device "$DEVICE" --models $MODELS --kernel-sizes "$k" \
      --batch "$BATCH" --size "$SIZE" --repeats "$REPEATS" --compile-repeats 1 "$@" \
      --json "$OUT/speed_${fw}_k$k.json" 2>&1 | grep -v -e '%|' -e USDT
  done
}

networks() {       # MONAI's networks, torch: zero vs reflect padding vs DiffConv, scaled up
  section networks
  $PY -c "import monai" 2>/dev/null || { echo "--- skipped: monai is not importable (see the header)"; return 0; }
  local spec name models batch size
  for spec in "2d:$NETWORKS:$NET_BATCH:$NET_SIZE" "3d:dynunet3d:$NET3D_BATCH:$NET3D_SIZE"; do
    IFS=: read -r name models batch size <<< "$spec"
    [ -n "$models" ] || continue
    section networks $name
    fits 60 || continue
    run "$NETWORK_SECONDS" $PY -m diffconv.lab.cli speed --framework torch --device "$DEVICE" --models $models \
      --batch "$batch" --size "$size" --repeats "$REPEATS" --json "$OUT/speed_networks_$name.json" 2>&1 \
      | grep -v -e '%|' -e USDT
  done
}

speed3() { speed 3; }
speed5() { speed 5; }
compiled() {       # both torch variants through torch.compile (Inductor): its compile time and step time
  section speed torch compiled k=3
  fits 120 || return 0
  run 200 $PY -m diffconv.lab.cli speed --framework torch --torch-compile --device "$DEVICE" --models $MODELS \
    --kernel-sizes 3 --batch "$BATCH" --size "$SIZE" --repeats "$REPEATS" \
    --json "$OUT/speed_torch_compiled_k3.json" 2>&1 | grep -v -e '%|' -e USDT
}

for part in $PARTS; do
  "$part"
done
section done
