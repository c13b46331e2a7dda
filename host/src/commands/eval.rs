//! `host eval`: classifies the test set with the tinycnn core and reports how well it did.

use std::path::PathBuf;

use clap::Args;
use tinycnn_host::deploy::eval;

use super::{DataDir, ModelArg, emit, whole_number};

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    model: ModelArg,
    /// Evaluate the first N test images only [default: all].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    limit: Option<usize>,
    /// Also draw the confusion matrix as a PNG heat map into FILE (the report is printed first;
    /// by default nothing is written).
    #[arg(long, value_name = "FILE")]
    confusion_png: Option<PathBuf>,
    /// Also write the report as eval.json, and the confusion matrix as confusion.png unless
    /// --confusion-png puts it elsewhere, into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace those files if they exist (by default an existing file is never replaced).
    #[arg(long)]
    overwrite: bool,
    /// Threads to classify on [default: all cores]; 1 measures single-thread speed.
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    threads: Option<usize>,
    /// Classify with the core's portable kernels, as a Cortex-M0 or M3 runs them, instead of
    /// the ones built for this processor (AVX-512 with VNNI, or AVX2, where it has them; the
    /// same int8 results).
    #[arg(long)]
    portable: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let report = eval::run(&eval::EvalOptions {
        model: args.model.model.clone(),
        data_dir: args.data.ready(args.json)?,
        limit: args.limit,
        confusion_png: args.confusion_png.clone(),
        out: args.out.clone(),
        overwrite: args.overwrite,
        threads: args.threads.unwrap_or_else(eval::available_threads),
        kernels: if args.portable {
            eval::Kernels::Portable
        } else {
            eval::Kernels::Fast
        },
        fit: args.data.fit.unwrap_or_default(),
        skip_damaged: args.data.skip_damaged,
    })?;
    // The report comes first, so that a file that cannot be written loses nothing of it.
    if args.json {
        emit(format!("{}\n", report.to_json()));
    } else {
        emit(report.evaluation.report());
    }
    for path in report.write_files()? {
        if args.json {
            eprintln!("wrote {}", path.display());
        } else {
            emit(format!("wrote {}\n", path.display()));
        }
    }
    Ok(())
}
