//! `host data`: shows the data set (its shapes, one training image and its label).

use std::process::ExitCode;

use clap::Args;
use tinycnn_host::data::{self, mnist::Mnist};

use super::{DataDir, emit, print_report};

#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only make sure the data set is there (download and verify what the directory lacks),
    /// then say what it holds.
    #[arg(long)]
    download: bool,
    /// Training image to print (0-based).
    #[arg(long, value_name = "N", default_value_t = 0)]
    index: usize,
}

pub(crate) fn run(args: &DataArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data.ready(false)?;
    if args.download {
        emit(format!("{}\n", Mnist::load(&dir)?.describe()));
        return Ok(ExitCode::SUCCESS);
    }
    print_report(data::show(&dir, args.index))
}
