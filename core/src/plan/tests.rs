use std::vec::Vec;

use super::*;
use crate::format::peek_architecture;

fn parse(text: &str) -> Architecture {
    crate::text::parse(text, Shape::new(28, 28, 1)).unwrap()
}

#[test]
fn the_reference_network_runs_in_seven_steps_with_pools_fused() {
    let reference = Architecture::REFERENCE;
    let operations: Vec<_> = steps(&reference)
        .map(|step| (step.operation, step.output))
        .collect();
    assert_eq!(operations.len(), 7);
    assert_eq!(step_count(&reference), 7);
    assert!(matches!(
        operations[0],
        (
            Operation::Conv { pooled: true, .. },
            Shape {
                height: 14,
                width: 14,
                channels: 64
            }
        )
    ));
    assert!(matches!(
        operations[2].1,
        Shape {
            height: 3,
            width: 3,
            channels: 256
        }
    ));
    assert!(matches!(operations[3].0, Operation::Dense));
    // Out of place: conv2's input + output.
    assert_eq!(
        out_of_place_scratch_bytes(&reference, false),
        12_544 + 6_272
    );
    assert_eq!(f32_scratch_len(&reference), 12_544 + 6_272);
    // With the DSP kernels in bands: conv1's pooled output (12,544) in the frame, conv2's four
    // input rows of 16 framed pixels (4,096) and the work areas (with their word for the
    // requantisation's decision) in the band area.
    let dsp = layout(&reference, true);
    assert_eq!(
        (dsp.band_area, dsp.frame, dsp.out_of_place),
        (9_220, 12_544, false)
    );
    assert_eq!(int8_scratch_bytes_for(&reference, true), 21_764);
    // The portable kernels keep the fused convolutions and pools in one call: out of place.
    let portable = layout(&reference, false);
    assert!(portable.out_of_place);
    assert_eq!(
        int8_scratch_bytes_with(&reference, Backend::Portable),
        18_816
    );
}

#[test]
fn out_of_place_regions_alternate_ends_and_never_overlap() {
    let reference = Architecture::REFERENCE;
    let all: Vec<_> = steps(&reference).collect();
    let first = out_of_place_regions(&all[0], 0, 20_000);
    assert!(all[0].reads_low_end);
    // conv1 + pool writes 14x14x64 at the high end.
    assert_eq!((first.input, first.output, first.work), (0, 7_456, 784));
    assert_eq!(first.work_len, 7_456 - 784);
    let second = out_of_place_regions(&all[1], 0, 20_000);
    assert!(!all[1].reads_low_end);
    assert_eq!(
        (second.input, second.output, second.work),
        (7_456, 0, 6_272)
    );
    assert_eq!(second.work_len, 7_456 - 6_272);
    // With a shortcut area, everything moves up by its length.
    let shifted = out_of_place_regions(&all[0], 64, 20_000);
    assert_eq!((shifted.input, shifted.work), (64, 64 + 784));
}

const SMALL_RESNET: &str = "input:8x8x2 conv3x3:4 residual:8:s2 conv3x3:8:s2 conv3x3:8:linear add \
     residual conv3x3:8 conv3x3:8:linear add gap dense:3";

#[test]
fn out_of_place_residual_blocks_keep_their_shortcut_below_the_swapping_part() {
    let resnet = parse(SMALL_RESNET);
    let all: Vec<_> = steps(&resnet).collect();
    let kinds: Vec<_> = all.iter().map(|s| s.operation).collect();
    assert!(matches!(kinds[1], Operation::Shortcut { .. }));
    // The shortcut step leaves the main line where it was.
    assert_eq!(all[1].reads_low_end, all[2].reads_low_end);
    assert_eq!(all[1].output, Shape::new(4, 4, 8));
    assert!(matches!(kinds[4], Operation::Add { .. }));
    // The largest shortcut: the projection's 4x4x8 or the identity's 4x4x8.
    assert_eq!(shortcut_len(&resnet), 128);
    // conv1's 128 + 256 is the largest swapping step.
    assert_eq!(out_of_place_scratch_bytes(&resnet, false), 128 + 128 + 256);
    let arena = out_of_place_scratch_bytes(&resnet, false);
    for step in &all {
        let r = out_of_place_regions(step, shortcut_len(&resnet), arena);
        let (input, output) = (step.input.values(), step.output.values());
        if step.swaps_ends() {
            assert!(r.input >= 128 && r.output >= 128, "{step:?}");
            let (low, high) = if r.input < r.output {
                (r.input + input, r.output)
            } else {
                (r.output + output, r.input)
            };
            assert!(low <= high, "{step:?} overlaps");
            assert!(r.input + input <= arena && r.output + output <= arena);
        } else {
            assert_eq!(r.output, 0);
            assert!(output <= 128);
        }
    }
}

/// The MLPerf Tiny networks' descriptions (`arch`'s test has their published sizes).
fn mlperf() -> [(&'static str, Architecture); 4] {
    let model = |bytes: &[u8]| peek_architecture(bytes).unwrap().1;
    [
        (
            "kws",
            model(include_bytes!("../../../data/mlperf/kws.tcnn")),
        ),
        (
            "vww",
            model(include_bytes!("../../../data/mlperf/vww.tcnn")),
        ),
        (
            "resnet8",
            model(include_bytes!("../../../data/mlperf/resnet8.tcnn")),
        ),
        (
            "autoencoder",
            model(include_bytes!("../../../data/mlperf/autoencoder.tcnn")),
        ),
    ]
}

#[test]
fn the_mlperf_networks_fit_in_their_targets() {
    // (DSP kernels, portable kernels), bytes.
    let expected = [
        ("kws", (1_796 + 8_384, 320 + 8_320)),
        ("vww", (2_740 + 36_864, 384 + 36_864)),
        ("resnet8", (2_788 + 33_280, 1_632 + 33_280)),
        ("autoencoder", (768, 768)),
    ];
    for ((name, architecture), (expected_name, (dsp, portable))) in
        mlperf().into_iter().zip(expected)
    {
        assert_eq!(name, expected_name);
        assert_eq!(
            (
                int8_scratch_bytes_for(&architecture, true),
                int8_scratch_bytes_for(&architecture, false)
            ),
            (dsp, portable),
            "{name}"
        );
    }
    let kws = mlperf()[0].1;
    // The DS-CNN's 25x5x64 maps: with the Arm DSP kernels the depthwise convolutions write
    // over their own input, a row and a pixel (384 bytes) away, alternately before and after
    // it; with the portable ones they shift it by a row of 320 bytes in bands. The 1x1
    // convolutions overwrite their input.
    let layout = layout(&kws, true);
    let placed: Vec<_> = placements(&kws, layout).map(|(_, r)| r).collect();
    for depthwise in [1, 3, 5, 7] {
        let r = placed[depthwise];
        assert_eq!(r.mode, Mode::InPlace, "{placed:?}");
        assert_eq!(r.input.abs_diff(r.output), 384, "{placed:?}");
    }
    assert!(placed[1].output > placed[1].input && placed[3].output < placed[3].input);
    let portable = super::layout(&kws, false);
    assert!(matches!(
        placements(&kws, portable).nth(1).unwrap().1.mode,
        Mode::Bands {
            downward: false,
            ..
        }
    ));
    let (_, conv2) = placements(&kws, layout).nth(2).unwrap();
    assert_eq!(conv2.input, conv2.output);
}

#[test]
fn dense_layers_go_without_their_work_area_only_where_it_would_set_the_arena() {
    // The autoencoder's 640-input and 640-output layers would need 2,048 and 1,024 bytes with
    // their input widened in the work area; its 128-wide layers fit theirs beside their maps.
    let autoencoder = mlperf()[3].1;
    let layout = layout(&autoencoder, true);
    assert_eq!(layout.arena(), 640 + 128);
    // The input of each layer that widens it in its work area.
    let widened: Vec<_> = placements(&autoencoder, layout)
        .map(|(step, regions)| {
            assert_eq!(regions.mode, Mode::Whole);
            (regions.work_len >= work_bytes(&step, true)).then_some(step.input.values())
        })
        .collect();
    let w = Some(128);
    assert_eq!(widened, [None, w, w, w, w, Some(8), w, w, w, None]);
    // The tutorial's network keeps its dense layers' work areas: its maps set its arena.
    let tutorial =
        crate::format::peek_architecture(include_bytes!("../../../data/model-int8.tcnn"))
            .unwrap()
            .1;
    for (step, regions) in placements(&tutorial, super::layout(&tutorial, true)) {
        if let Operation::Dense = step.operation {
            assert!(regions.work_len >= work_bytes(&step, true), "{step:?}");
        }
    }
}
