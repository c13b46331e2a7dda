//! The int8 arena's plan, run on tags instead of values: every step and band of the
//! shipped networks, the MLPerf Tiny ones and random ones reads the values it needs (no band
//! overwrites input a later band reads, no step the shortcut of its block), and every region
//! lies inside the arena.

mod common;

use common::random_architecture;
use tinycnn::Architecture;
use tinycnn::format::peek_architecture;
use tinycnn::plan::{
    self, Band, Layout, Mode, Operation, Placer, layout, out_of_place_scratch_bytes, placements,
};

/// What a shadow run saw: steps run in bands, and in place ([`Mode::InPlace`]): all,
/// those with the output after the input, and those of them with their quads reversed.
#[derive(Clone, Copy, Debug, Default)]
struct Runs {
    banded: usize,
    in_place: usize,
    backward: usize,
    quads_reversed: usize,
}

impl std::ops::AddAssign for Runs {
    fn add_assign(&mut self, other: Runs) {
        self.banded += other.banded;
        self.in_place += other.in_place;
        self.backward += other.backward;
        self.quads_reversed += other.quads_reversed;
    }
}

/// Which map's which value an arena unit holds (`None`: anything).
type Tag = Option<(usize, usize)>;

/// A map and where it lies.
#[derive(Clone, Copy, Debug)]
struct Map {
    id: usize,
    at: usize,
    len: usize,
}

fn check_holds(memory: &[Tag], map: Map, from: usize, to: usize, what: &str) {
    for index in from..to {
        assert_eq!(
            memory[map.at + index],
            Some((map.id, index)),
            "{what}: unit {} (value {index} of map {})",
            map.at + index,
            map.id
        );
    }
}

fn write(memory: &mut [Tag], at: usize, values: impl Iterator<Item = Tag>) {
    for (slot, tag) in memory[at..].iter_mut().zip(values) {
        *slot = tag;
    }
}

fn scribble(memory: &mut [Tag], from: usize, to: usize) {
    for slot in &mut memory[from..to] {
        *slot = None;
    }
}

fn apart(a: (usize, usize), b: (usize, usize)) -> bool {
    a.1 <= b.0 || b.1 <= a.0 || a.0 == a.1 || b.0 == b.1
}

/// Runs the plan of `architecture` in `layout` on tags, as the runner goes (bands in their
/// order, band buffers and work areas overwritten), and checks that every read finds the
/// values it needs and every region lies inside the arena.
fn shadow_run(architecture: &Architecture, layout: Layout) -> Runs {
    let arena = layout.arena();
    let band_area = layout.band_area;
    let mut memory: Vec<Tag> = vec![None; arena];
    let input = architecture.input().values();
    let mut main = Map {
        id: 0,
        at: Placer::new(architecture, layout).input_offset(),
        len: input,
    };
    write(&mut memory, main.at, (0..input).map(|i| Some((0, i))));
    let mut shortcut: Option<Map> = None;
    let mut runs = Runs::default();
    for (index, (step, r)) in placements(architecture, layout).enumerate() {
        let id = index + 1;
        let name = format!(
            "{architecture} ({layout:?}): step {index} {:?}",
            step.operation
        );
        let (in_len, out_len) = (step.input.values(), step.output.values());
        assert!(r.input + in_len <= arena, "{name}: input outside");
        assert!(r.output + out_len <= arena, "{name}: output outside");
        assert!(r.work + r.work_len <= arena, "{name}: work outside");
        assert_eq!(r.work % 4, 0, "{name}: work unaligned");
        assert_eq!(
            r.input, main.at,
            "{name}: reads elsewhere than the main line"
        );
        let is_add = matches!(step.operation, Operation::Add { .. });
        let kept = if is_add {
            let kept = shortcut.take().expect("an open block");
            assert_eq!(r.shortcut, kept.at, "{name}");
            Some(kept)
        } else {
            None
        };
        let output = Map {
            id,
            at: r.output,
            len: out_len,
        };
        let read = (r.input, r.input + in_len);
        match r.mode {
            Mode::Keep => {
                assert_eq!((r.input, r.output), (main.at, main.at), "{name}");
                shortcut = Some(main);
                continue;
            }
            Mode::Whole => {
                check_holds(&memory, main, 0, in_len, &name);
                if let Some(kept) = kept {
                    check_holds(&memory, kept, 0, out_len, &name);
                }
                let written = (r.output, r.output + out_len);
                let work = (r.work, r.work + r.work_len);
                // Only a dense layer goes without its work area (widening its input as it
                // reads it); any other kernel would run its slower portable twin.
                let needed = plan::work_bytes(&step, layout.dsp);
                let is_dense = matches!(step.operation, Operation::Dense);
                assert!(
                    r.work_len >= needed || (is_dense && r.work_len == 0),
                    "{name}: {} bytes of work for {needed}",
                    r.work_len
                );
                assert!(apart(written, read), "{name}: output over input");
                assert!(apart(work, written), "{name}: work over output");
                assert!(apart(work, read), "{name}: work over input");
                if let Some(kept) = shortcut {
                    // The open block's shortcut survives every step of the block.
                    let kept = (kept.at, kept.at + kept.len);
                    assert!(apart(written, kept), "{name}: overwrites the shortcut");
                    assert!(apart(work, kept), "{name}: work over the shortcut");
                }
                scribble(&mut memory, work.0, work.1);
                write(&mut memory, r.output, (0..out_len).map(|i| Some((id, i))));
            }
            Mode::InPlace => {
                runs.in_place += 1;
                check_holds(&memory, main, 0, in_len, &name);
                let (height, width, channels) =
                    (step.input.height, step.input.width, step.input.channels);
                assert_eq!(
                    (step.output.height, step.output.width, step.output.channels),
                    (height, width, channels),
                    "{name}"
                );
                let maps = (
                    r.input.min(r.output),
                    (r.input + in_len).max(r.output + out_len),
                );
                let work = (r.work, r.work + r.work_len);
                assert!(work.1 <= band_area, "{name}: work outside the band area");
                if let Some(kept) = shortcut {
                    assert!(
                        apart(maps, (kept.at, kept.at + kept.len)),
                        "{name}: overwrites the shortcut"
                    );
                }
                scribble(&mut memory, work.0, work.1);
                // The kernel's order (`dsp::depthwise_in_place`): before its input, pixels
                // from the top left; after it, from the bottom right, quads in reverse where
                // a pixel's output would fall on its own unread quads.
                let lag = (width + 1) * channels;
                let (forward, quads_reversed) = if r.output + lag <= r.input {
                    (true, false)
                } else {
                    let beyond = r.output.checked_sub(r.input + lag);
                    let beyond = beyond.unwrap_or_else(|| panic!("{name}: output too close"));
                    (false, beyond != 0 && beyond < channels)
                };
                runs.backward += usize::from(!forward);
                runs.quads_reversed += usize::from(quads_reversed);
                let (pixels, quads) = (height * width, channels / 4);
                for done in 0..pixels {
                    let pixel = if forward { done } else { pixels - 1 - done };
                    let (y, x) = (pixel / width, pixel % width);
                    let mut order: Vec<usize> = (0..quads).collect();
                    if quads_reversed {
                        order.reverse();
                    }
                    for quad in order {
                        // Nine taps of 'same' padding, those inside the map.
                        for (dy, dx) in (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx))) {
                            let (row, column) =
                                ((y + dy).wrapping_sub(1), (x + dx).wrapping_sub(1));
                            if row < height && column < width {
                                let at = (row * width + column) * channels + 4 * quad;
                                check_holds(&memory, main, at, at + 4, &name);
                            }
                        }
                        let at = pixel * channels + 4 * quad;
                        write(
                            &mut memory,
                            r.output + at,
                            (at..at + 4).map(|i| Some((id, i))),
                        );
                    }
                }
            }
            Mode::Bands {
                rows,
                downward,
                staged,
                buffer,
            } => {
                runs.banded += 1;
                assert!(rows >= 1, "{name}");
                assert_eq!(r.work, 0, "{name}");
                assert_eq!(buffer, r.work_len, "{name}");
                assert!(
                    buffer + r.buffer_len(&step) <= band_area,
                    "{name}: band area"
                );
                let row_in = step.input.width * step.input.channels;
                let row_out = step.output.width * step.output.channels;
                let height = step.output.height;
                let count = height.div_ceil(rows);
                for done in 0..count {
                    let band_index = if downward { done } else { count - 1 - done };
                    let first = band_index * rows;
                    let band = Band {
                        first,
                        rows: rows.min(height - first),
                    };
                    let (from, to) = step.band_input_rows(band);
                    check_holds(&memory, main, from * row_in, to * row_in, &name);
                    if let Some(kept) = kept {
                        let rows = (first * row_out, (first + band.rows) * row_out);
                        check_holds(&memory, kept, rows.0, rows.1, &name);
                    }
                    let used = if staged {
                        let staging = step.staging(band);
                        assert_eq!(staging.data, to - from, "{name}");
                        assert_eq!(
                            staging.len(),
                            step.with_band(band).band_input().values(),
                            "{name}: the staged copy and the band's input shape"
                        );
                        staging.len()
                    } else {
                        band.rows * row_out
                    };
                    assert!(buffer + used <= band_area, "{name}: band buffer outside");
                    scribble(&mut memory, 0, buffer + used);
                    let start = r.output + first * row_out;
                    let end = start + band.rows * row_out;
                    if let Some(kept) = shortcut {
                        assert!(
                            apart((start, end), (kept.at, kept.at + kept.len)),
                            "{name}: overwrites the shortcut"
                        );
                    }
                    write(
                        &mut memory,
                        start,
                        (first * row_out..(first + band.rows) * row_out).map(|i| Some((id, i))),
                    );
                }
            }
        }
        if let Operation::Shortcut { .. } = step.operation {
            shortcut = Some(output);
        } else {
            main = output;
        }
    }
    check_holds(&memory, main, 0, main.len, "the network's output");
    assert!(shortcut.is_none());
    runs
}

/// The shipped networks and the MLPerf Tiny ones, by file.
fn shipped() -> Vec<(&'static str, Architecture)> {
    let model = |bytes: &[u8]| peek_architecture(bytes).unwrap().1;
    vec![
        (
            "reference",
            model(include_bytes!("../../data/model-int8.tcnn")),
        ),
        (
            "small",
            model(include_bytes!("../../data/small/model-int8.tcnn")),
        ),
        ("kws", model(include_bytes!("../../data/mlperf/kws.tcnn"))),
        ("vww", model(include_bytes!("../../data/mlperf/vww.tcnn"))),
        (
            "resnet8",
            model(include_bytes!("../../data/mlperf/resnet8.tcnn")),
        ),
        (
            "autoencoder",
            model(include_bytes!("../../data/mlperf/autoencoder.tcnn")),
        ),
    ]
}

#[test]
fn every_read_of_the_shipped_networks_finds_its_values() {
    for (name, architecture) in shipped() {
        for dsp in [false, true] {
            let banded = shadow_run(&architecture, layout(&architecture, dsp)).banded;
            // The autoencoder has nothing to run in bands; with the portable kernels the
            // tutorial's networks keep their fused convolutions and pools in one call.
            let expected = match name {
                "autoencoder" => false,
                "reference" | "small" => dsp,
                _ => true,
            };
            assert_eq!(banded > 0, expected, "{name}");
            shadow_run(&architecture, Layout::out_of_place(&architecture, dsp));
        }
    }
    shadow_run(&common::ds_cnn(), layout(&common::ds_cnn(), true));
}

#[test]
fn every_read_of_random_networks_finds_its_values() {
    let mut runs = Runs::default();
    for seed in 0..3_000 {
        let architecture = random_architecture(seed);
        for dsp in [false, true] {
            let layout = layout(&architecture, dsp);
            runs += shadow_run(&architecture, layout);
            shadow_run(&architecture, Layout::out_of_place(&architecture, dsp));
            assert!(
                layout.arena() <= out_of_place_scratch_bytes(&architecture, dsp),
                "{architecture} ({dsp}): {layout:?}"
            );
            assert_eq!(
                layout.arena(),
                plan::int8_scratch_bytes_for(&architecture, dsp)
            );
        }
    }
    assert!(runs.banded > 1_000, "{runs:?}");
    assert!(runs.in_place > 0, "{runs:?}");
}

/// Depthwise convolutions run in place before and after their input, with their quads in
/// order and reversed, in networks made for it (1x1 convolutions between them and after the
/// last widen the channels by varied amounts, so that the frame they need falls around what
/// the depthwise convolutions need, a few bytes past it included), and every read finds its
/// values.
#[test]
fn depthwise_convolutions_run_in_place_both_ways() {
    let mut runs = Runs::default();
    for (height, width) in [(5, 4), (6, 7), (9, 3), (4, 12), (7, 5), (3, 9)] {
        for channels in [4, 8, 12, 16, 24] {
            let widths = [4, 8, 12, 20].into_iter();
            for (wider, last) in widths.flat_map(|w| (1..=12).map(move |l| (w, l))) {
                let text = format!(
                    "input:{height}x{width}x1 conv3x3:{channels} dw3x3 conv1x1:{} dw3x3 \
                     conv1x1:{channels} dw3x3 conv1x1:{} flatten dense:3",
                    channels + wider,
                    channels + last
                );
                let architecture =
                    tinycnn::text::parse(&text, tinycnn::arch::Shape::new(1, 1, 1)).unwrap();
                runs += shadow_run(&architecture, layout(&architecture, true));
            }
        }
    }
    eprintln!("{runs:?}");
    assert!(runs.in_place > runs.backward, "{runs:?}");
    assert!(runs.backward > runs.quads_reversed, "{runs:?}");
    assert!(runs.quads_reversed > 0, "{runs:?}");
}
