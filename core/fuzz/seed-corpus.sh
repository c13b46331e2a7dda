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
    # Flavour selector: even -> f32 (1), odd -> int8 (2); the header's byte 6 says which.
    flavour=$(od -An -tu1 -j6 -N1 "$model" | tr -d ' ')
    { printf "\\x$(printf %02x "$((flavour - 1))")"; tail -c +17 "$model"; } > "$here/corpus/model_payload/$name"
done
for vectors in "$data"/model-int8.tctv "$data"/small/model-int8.tctv; do
    cp "$vectors" "$here/corpus/test_vectors/$(basename "$(dirname "$vectors")")-vectors"
done
echo "seeded $(ls "$here"/corpus/* | wc -l) corpus entries"
