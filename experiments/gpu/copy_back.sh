#!/usr/bin/env bash
# Copy a run folder into a folder that comes back from the GPU machine (which returns files of
# at most 16 MiB), cutting every file over 15 MiB into 15 MiB pieces NAME.part00, NAME.part01, ...
# with coreutils split; the run folder itself stays whole. The other scripts here call it at
# their end when COPY_BACK names such a folder (e.g. COPY_BACK=$OUT).
# Usage: bash experiments/gpu/copy_back.sh RUN_DIR DEST_DIR      (writes DEST_DIR/$(basename RUN_DIR))
# Joining the pieces back, here, in the returned folder (walkback names the command when it meets
# pieces where a file should be):
#   cat NAME.part?? > NAME && rm NAME.part??                                        # one file
#   find DIR -name '*.part00' | while read -r p; do f=${p%.part00}; cat "$f".part?? > "$f" && rm "$f".part??; done
set -euo pipefail
src=${1:?run folder}; dest=${2:?destination folder}
mkdir -p "$dest"
cp -r "$src" "$dest/"
find "$dest/$(basename "$src")" -type f -size +15M -print0 |
  while IFS= read -r -d '' f; do split -b 15M -d "$f" "$f.part" && rm "$f"; done
