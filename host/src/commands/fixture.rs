//! `host fixture`: writes test vectors for the firmware to check itself against.

use std::path::PathBuf;

use clap::Args;
use tinycnn_host::deploy::fixture;

use super::{DataDir, emit, whole_number};

#[derive(Debug, Args)]
pub(crate) struct FixtureArgs {
    #[command(flatten)]
    data: DataDir,
    /// The model whose outputs the vectors record: int8 (checked byte for byte, as the
    /// firmware does) or f32 (checked by value, within 1e-4 of the largest output).
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    model: PathBuf,
    /// Number of test images, taken from the start of the test set; for a keyword model, test
    /// clips taken a class at a time (the first clip of each word, then the second, ...), so
    /// that a few cover every word. A keyword model's vectors hold the clips themselves (TCTV
    /// version 4).
    #[arg(long, value_name = "N", default_value_t = fixture::DEFAULT_COUNT,
          value_parser = whole_number(1, usize::MAX))]
    count: usize,
    /// Output file (TCTV test vectors, see core/FORMAT.md) [default: the model's path with the
    /// extension .tctv, where the firmware looks for it].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace the output file if it exists (by default it is never replaced).
    #[arg(long)]
    overwrite: bool,
    /// Random pictures of the model's input shape instead of MNIST test images, for networks
    /// MNIST does not fit (each labelled with the class the core computes).
    #[arg(long)]
    random: bool,
}

pub(crate) fn run(args: &FixtureArgs) -> anyhow::Result<()> {
    let report = fixture::run(&fixture::FixtureOptions {
        model: args.model.clone(),
        data_dir: if args.random {
            None
        } else {
            Some(args.data.ready(false)?)
        },
        count: args.count,
        out: args.out.clone(),
        fit: args.data.fit.unwrap_or_default(),
        skip_damaged: args.data.skip_damaged,
        overwrite: args.overwrite,
    })?;
    let checked = match report.correct {
        Some(correct) => format!("{correct} classified correctly by"),
        None => "the output values of".to_string(),
    };
    emit(format!(
        "wrote {}: {} test vectors ({} bytes), {checked} {}\n",
        report.path.display(),
        report.vectors,
        report.bytes,
        args.model.display()
    ));
    Ok(())
}
