#!/usr/bin/env bash
# The positive control of analyses/positive-control.md: bash analyses/positive_control.sh [OUT]
set -euo pipefail
out=${1:-control}
isoprobe data synth --preset synergy --gestures 17 --seconds-per-repetition 5 --rest-seconds 1 --out "$out/data"
isoprobe train --data "$out/data" --out "$out/ordinary" --epochs 100 --resume
isoprobe train --data "$out/data" --out "$out/readout-from-emg-only" --epochs 100 --pathway-dropout "cls->acc:1" --resume
isoprobe train --data "$out/data" --out "$out/emg-alone" --modalities emg --epochs 60 --resume
isoprobe eval "$out/emg-alone/checkpoint.pt" --out "$out/emg-alone/eval"
for run in ordinary readout-from-emg-only; do
  isoprobe ablate "$out/$run/checkpoint.pt" --layers all --pathway "cross,emg->acc,acc->emg,cls->acc" --mode joint --out "$out/$run/ablate"
  isoprobe compare "$out/$run/checkpoint.pt" --out "$out/$run/compare"
done
python "$(dirname "$0")/positive_control_pairs.py" "$out/data" "$out/emg-alone/checkpoint.pt" \
  "$out/ordinary/checkpoint.pt" "$out/readout-from-emg-only/checkpoint.pt"
