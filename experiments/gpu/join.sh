#!/usr/bin/env bash
# Reassembles what experiments/gpu/train_offline.sh mirrored (FETCHED) into the run folder RUN (docs/gpu.md).
#
#   bash experiments/gpu/join.sh FETCHED RUN
#
# A model folder's weights are joined and checked against MANIFEST.txt and placed with its JSON files (the
# digests in sigmas.json then vouch for them); a checkpoint goes to RUN/checkpoints/ckpt-STEP.npz with
# config.json, to be finished with --resume --iterations STEP.
set -euo pipefail
in=$1 run=$2
mkdir -p "$run"
read -r sum name < "$in/MANIFEST.txt"
cat "$in/$name".part* > "$run/.joined"
echo "$sum  $run/.joined" | sha256sum -c --quiet
if [[ $name == ckpt.npz ]]; then
  step=$(python3 -c "import numpy, sys; print(int(numpy.load(sys.argv[1])['step']))" "$run/.joined")
  mkdir -p "$run/checkpoints" && mv "$run/.joined" "$run/checkpoints/ckpt-$step.npz"
  cp "$in/config.json" "$run/"
  echo "$run: checkpoint of step $step; finish it with --resume --iterations $step"
else
  mv "$run/.joined" "$run/last.weights.h5"
  cp "$in"/*.json "$run/"
  echo "$run: model folder"
fi
