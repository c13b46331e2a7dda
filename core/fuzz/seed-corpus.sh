#!/usr/bin/env bash
# Seeds the fuzz corpora with real files: the shipped models (whole, for
# model_bytes; as flavour byte + payload, for model_payload) and their test
# vectors. Run from anywhere; writes core/fuzz/corpus/<target>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../../data
mkdir -p "$here/corpus/model_bytes" "$here/corpus/model_payload" "$here/corpus/test_vectors"
for model in "$data"/model-*.tcnn "$data"/small/model-*.tcnn; do
    name=$(basename "$(dirname "$model")")-$(basename "$model" .tcnn)
    cp "$model" "$here/corpus/model_bytes/$name"
    # Selector: bit 0 the flavour (0 f32, 1 int8: the header's byte 6 minus 1), bits 1 to 3
    # the version minus 1 (the header's byte 4).
    flavour=$(od -An -tu1 -j6 -N1 "$model" | tr -d ' ')
    version=$(od -An -tu1 -j4 -N1 "$model" | tr -d ' ')
    selector=$(( (flavour - 1) | ((version - 1) << 1) ))
    { printf "\\x$(printf %02x "$selector")"; tail -c +17 "$model"; } > "$here/corpus/model_payload/$name"
done
for vectors in "$data"/model-int8.tctv "$data"/small/model-int8.tctv; do
    cp "$vectors" "$here/corpus/test_vectors/$(basename "$(dirname "$vectors")")-vectors"
done
echo "seeded $(ls "$here"/corpus/* | wc -l) corpus entries"
