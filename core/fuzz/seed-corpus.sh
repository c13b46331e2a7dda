#!/usr/bin/env bash
# Seeds the fuzz corpora with real files: the shipped models (whole, for
# model_bytes; as flavour byte + payload, for model_payload), the keyword
# model's version 5 files (if any) also as version 6 (the 16-bit FFT's byte ending
# their front-end section), and their test vectors. Run from anywhere; writes
# core/fuzz/corpus/<target>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../../data
mkdir -p "$here/corpus/model_bytes" "$here/corpus/model_payload" "$here/corpus/test_vectors"
for model in "$data"/model-*.tcnn "$data"/small/model-*.tcnn "$data"/keyword-spotting/model-*.tcnn; do
    name=$(basename "$(dirname "$model")")-$(basename "$model" .tcnn)
    cp "$model" "$here/corpus/model_bytes/$name"
    # Selector: bit 0 the flavour (0 f32, 1 int8: the header's byte 6 minus 1), bits 1 to 3
    # the version minus 1 (the header's byte 4).
    flavour=$(od -An -tu1 -j6 -N1 "$model" | tr -d ' ')
    version=$(od -An -tu1 -j4 -N1 "$model" | tr -d ' ')
    selector=$(( (flavour - 1) | ((version - 1) << 1) ))
    { printf "\\x$(printf %02x "$selector")"; tail -c +17 "$model"; } > "$here/corpus/model_payload/$name"
    if [[ $version -eq 5 ]]; then
        # The same model with the 16-bit FFT: version 6, whose front-end section ends with the
        # FFT's data bits (16); the header's length and CRC follow.
        python3 - "$model" "$here/corpus/model_bytes/$name-v6" <<'PYTHON'
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
payload = data[16:] + bytes([16])
head = data[:4] + struct.pack('<HBBI', 6, data[6], 0, len(payload))
open(sys.argv[2], 'wb').write(head + struct.pack('<I', zlib.crc32(head + payload)) + payload)
PYTHON
        selector=$(( (flavour - 1) | (5 << 1) ))
        { printf "\\x$(printf %02x "$selector")"; tail -c +17 "$model"; printf '\x10'; } \
            > "$here/corpus/model_payload/$name-v6"
    fi
done
for vectors in "$data"/model-int8.tctv "$data"/small/model-int8.tctv "$data"/keyword-spotting/model-int8.tctv; do
    cp "$vectors" "$here/corpus/test_vectors/$(basename "$(dirname "$vectors")")-vectors"
done
echo "seeded $(ls "$here"/corpus/* | wc -l) corpus entries"
