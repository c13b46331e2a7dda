#!/usr/bin/env bash
# Seconds per training epoch of the field's networks, Keras (scripts/keras-reference.sh) against
# host train, run alternately on the same machine so that both see the same load.
#
# Each network trains two epochs on the first 15,360 training pictures (120 batches of 128) with
# the same description, optimiser, schedule and batch size on both sides; the second epoch is the
# figure (Keras's first one includes tracing its graph), scaled to 60,000 pictures. Networks:
#   separable  the shipped depthwise-separable network (data/separable/) on MNIST
#   dscnn      MLPerf Tiny's DS-CNN shape on MNIST
#   resnet8    MLPerf Tiny's ResNet-8 on Fashion-MNIST padded to 32x32x3
#
# Usage: bash scripts/train-speed.sh [NETWORK ...]   (default: all three)
# Environment:
#   MNIST_DIR    the four MNIST IDX files (default: data/mnist)
#   FASHION_DIR  the four Fashion-MNIST IDX files (default: data/fashion-mnist)
#   FASHION_32   Fashion-MNIST as 32x32 PNG folders; made by scripts/idx-to-folders.py --pad-to 32
#                when missing (default: data/fashion-32)
#   HOST         the host binary (default: target/release/host, built first)
#   OUT          where the runs go (default: runs/train-speed)
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST_DIR=${MNIST_DIR:-data/mnist}
FASHION_DIR=${FASHION_DIR:-data/fashion-mnist}
FASHION_32=${FASHION_32:-data/fashion-32}
OUT=${OUT:-runs/train-speed}
if [[ -z ${HOST:-} ]]; then
    cargo build --release --bin host --quiet
    HOST=target/release/host
fi
mkdir -p "$OUT"

SEPARABLE="conv3x3:16:s2:bn dw3x3:bn conv1x1:20:bn dw3x3:s2:bn conv1x1:56:bn dw3x3:bn conv1x1:48:bn dw3x3:s2:bn flatten dense:10"
DSCNN="conv3x3:64:s2:bn drop:0.2 dw3x3:bn conv1x1:64:bn dw3x3:bn conv1x1:64:bn dw3x3:bn conv1x1:64:bn dw3x3:bn conv1x1:64:bn gap drop:0.4 dense:10"
RESNET8="input:32x32x3 conv3x3:16:bn residual conv3x3:16:bn conv3x3:16:linear:bn add residual:32:s2 conv3x3:32:s2:bn conv3x3:32:linear:bn add residual:64:s2 conv3x3:64:s2:bn conv3x3:64:linear:bn add avgpool8x8 flatten dense:10"

second_epoch() { # metrics file, JSON path to the list of per-epoch seconds
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

networks=("$@")
[[ ${#networks[@]} -gt 0 ]] || networks=(separable dscnn resnet8)
printf '%-10s %14s %14s %7s\n' network "Keras s/epoch" "host s/epoch" ratio
for net in "${networks[@]}"; do
    case $net in
        separable) arch=$SEPARABLE; keras_data=(--data "$MNIST_DIR"); host_data=$MNIST_DIR
                   recipe=(--optimizer adam --lr 0.003 --lr-schedule cosine) ;;
        dscnn)     arch=$DSCNN; keras_data=(--data "$MNIST_DIR"); host_data=$MNIST_DIR
                   recipe=(--optimizer adam --lr 0.002 --lr-schedule cosine) ;;
        resnet8)   arch=$RESNET8; keras_data=(--data "$FASHION_DIR" --pad-to 32 --channels 3)
                   host_data=$FASHION_32
                   recipe=(--optimizer adam --lr 0.002 --lr-schedule cosine)
                   [[ -d $FASHION_32 ]] ||
                       python3 scripts/idx-to-folders.py --data "$FASHION_DIR" --out "$FASHION_32" --pad-to 32 ;;
        *) echo "unknown network '$net' (separable, dscnn or resnet8)" >&2; exit 2 ;;
    esac
    bash scripts/keras-reference.sh "${keras_data[@]}" --arch "$arch" "${recipe[@]}" --epochs 2 \
        --limit 15360 --test-limit 1000 --bn-momentum 0.9 2>/dev/null | grep '^{' > "$OUT/keras-$net.json"
    "$HOST" train --data "$host_data" --arch "$arch" "${recipe[@]}" --epochs 2 --limit 15360 \
        --test-limit 1000 --out "$OUT/host-$net" --overwrite --quiet
    keras=$(second_epoch "$OUT/keras-$net.json" "d['seconds_per_epoch'][1]")
    host=$(second_epoch "$OUT/host-$net/metrics.json" "d['epochs'][1]['train_seconds']")
    python3 -c "import sys; k,h=float(sys.argv[1])*60000/15360,float(sys.argv[2])*60000/15360; print(f'%-10s %14.1f %14.1f %6.2fx' % (sys.argv[3], k, h, h/k))" \
        "$keras" "$host" "$net"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
