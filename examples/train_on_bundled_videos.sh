#!/usr/bin/env bash
# The main job on bundled defaults: SoundNet learns from the bundled videos (examples/data/video)
# with the bundled ImageNet teacher (examples/data/teachers), on the CPU, for a couple of minutes.
#
#   bash examples/train_on_bundled_videos.sh [BUILD_DIR] [OUT_DIR]
#
# 1. soundnet-prepare decodes each video's audio and one frame per second, runs the teacher on
#    the frames and writes a dataset store (OUT_DIR/dataset);
# 2. soundnet-train trains SoundNet-8 (one head: the one teacher) on random 20 s crops, holding
#    one video out for validation, and writes the weights, a checkpoint, a CSV log and a plot.
# Environment: SOUNDNET_MAIN_STEPS (default 150), SOUNDNET_MAIN_BATCH (default 8).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
out=${2:-$build/main-job}
steps=${SOUNDNET_MAIN_STEPS:-150}
batch=${SOUNDNET_MAIN_BATCH:-8}
for program in soundnet-prepare soundnet-train; do
  if [ ! -x "$build/apps/$program" ]; then
    echo "train_on_bundled_videos: $build/apps/$program is missing: build first (cmake -S . -B build && cmake --build build);" \
         "soundnet-prepare needs FFmpeg and OpenCV's DNN module (bash .ci/install-deps installs them)" >&2
    exit 1
  fi
done
rm -rf "$out/dataset"  # the store is rebuilt from the bundled videos each time (seconds)
mkdir -p "$out"
echo "== preparing the bundled videos (audio, frames, teacher posteriors) into $out/dataset"
"$build/apps/soundnet-prepare" --teacher "$root/examples/data/teachers/imagenet_squeezenet1.1.json" \
  --out "$out/dataset" "$root/examples/data/video"
echo "== training SoundNet-8 on the CPU: $steps steps of $batch crops of 20 s"
"$build/apps/soundnet-train" --arch soundnet8 --dataset "$out/dataset" --validation-videos 1 \
  --batch-size "$batch" --steps "$steps" --validate-every 25 \
  --save "$out/soundnet8.safetensors" --checkpoint "$out/checkpoint.safetensors" --checkpoint-every 50 \
  --log "$out/training-log.csv" --plot "$out/training-loss.png" | grep -E "^at step|^step [0-9]+/[0-9]+ .*(0|5)0/" || true
for file in soundnet8.safetensors checkpoint.safetensors training-log.csv; do
  [ -s "$out/$file" ] || { echo "train_on_bundled_videos: $out/$file was not written" >&2; exit 1; }
done
last=$(tail -1 "$out/training-log.csv")
echo
echo "Done. The last report (step, training loss, its baseline, validation KL, its baseline, seconds): $last"
echo "  (baseline: always predicting the training set's mean teacher distribution)"
echo "  weights:    $out/soundnet8.safetensors"
echo "  checkpoint: $out/checkpoint.safetensors  (continue with: soundnet-train --arch soundnet8 --dataset $out/dataset --resume $out/checkpoint.safetensors --steps N --save ...)"
echo "  log:        $out/training-log.csv"
[ -f "$out/training-loss.png" ] && echo "  loss plot:  $out/training-loss.png"
exit 0
