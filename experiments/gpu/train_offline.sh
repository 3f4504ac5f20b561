#!/usr/bin/env bash
# Trains experiments/skull2d.py under JAX on a GPU machine without a package index (docs/gpu.md).
#
#   bash experiments/gpu/train_offline.sh WHEELS DATA OUT [flags for experiments/skull2d.py]
#
# WHEELS and DATA are packs of scn-pack; OUT is a folder whose files come back (at most 8, of at most
# 16 MiB each). Installs the wheels into /tmp/site, starts the training detached (setsid: it outlives this
# command) into $RUN (default /tmp/scn_run) with $WORKERS feed workers (default 12), and every 15 s mirrors
# into OUT what the run has so far: while it trains, its newest checkpoint (ckpt.npz.partNN, 15 MiB parts)
# and config.json; once it has ended, the model folder (last.weights.h5.partNN, sigmas.json, config.json,
# confidence.json). MANIFEST.txt (SHA-256 of the whole files) is written last; train.log always.
# Returns when the training ends or after $LIMIT_S seconds (default 540), whichever comes first.
set -uo pipefail
wheels=$1 data=$2 out=$3
shift 3
run=${RUN:-/tmp/scn_run} limit=${LIMIT_S:-540} workers=${WORKERS:-12}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
: > /tmp/no_test_ids.txt  # test images stay at home: the trained folder is evaluated there
start=$SECONDS
setsid python3 experiments/skull2d.py --data_dir "$data" --fold test1 --test_ids /tmp/no_test_ids.txt \
  --output_dir "$run" --workers "$workers" "$@" > "$out/train.log" 2>&1 &
pid=$!

publish() {  # publish NAME FILE...: FILE split into NAME.partNN, the others copied; the manifest last
  local name=$1 big=$2 stage="$out/.stage"
  shift 2
  rm -rf "$stage" && mkdir -p "$stage" || return
  split -b 15M -d "$big" "$stage/$name.part" || return
  cp "$@" "$stage/" 2>/dev/null
  (cd "$(dirname "$big")" && sha256sum "$(basename "$big")" | sed "s/ .*/  $name/") > "$stage/MANIFEST.txt"
  find "$out" -maxdepth 1 -type f ! -name train.log -delete
  mv "$stage"/* "$out/" && rmdir "$stage"
}

last=""
while kill -0 "$pid" 2>/dev/null && (( SECONDS - start < limit )); do
  sleep 15
  newest=$(ls -t "$run"/checkpoints/ckpt-*.npz 2>/dev/null | head -1)
  if [[ -n $newest && $newest != "$last" ]]; then
    publish ckpt.npz "$newest" "$run/config.json" && last=$newest
    echo "mirrored $(basename "$newest") after $((SECONDS - start)) s" >> "$out/train.log"
  fi
done
if ! kill -0 "$pid" 2>/dev/null && [[ -f $run/sigmas.json ]]; then
  publish last.weights.h5 "$run/last.weights.h5" "$run"/{sigmas,config,confidence}.json
  echo "mirrored the model folder after $((SECONDS - start)) s" >> "$out/train.log"
fi
tail -3 "$out/train.log"
