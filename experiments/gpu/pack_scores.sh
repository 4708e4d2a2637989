#!/usr/bin/env bash
# Pack what a `walkback compare` folder scored into DEST/NAME.tar, cut into 15 MiB pieces
# (NAME.tar.part00, ...; join: cat NAME.tar.part?? > NAME.tar), for a copy back that caps file
# sizes and counts: the tables and plot, every arm's config, training log, scores and figures,
# and the EMA weights of the arms named in WEIGHTS (comma list of arm labels); no checkpoints.
# Usage: bash experiments/gpu/pack_scores.sh OUT_DIR DEST NAME [WEIGHTS]
set -euo pipefail
out=${1:?compare folder} dest=${2:?destination folder} name=${3:?archive name} weights=${4:-}
mkdir -p "$dest"
keep=(-name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.png')
for arm in ${weights//,/ }; do keep+=(-o -path "./$arm/*/model/*"); done
(cd "$out" && find . -path ./cache -prune -o -type f \( "${keep[@]}" \) -print |
   grep -v /checkpoints/ | tar -cf - -T -) > "$dest/$name.tar"
split -b 15M -d "$dest/$name.tar" "$dest/$name.tar.part"
rm "$dest/$name.tar"
