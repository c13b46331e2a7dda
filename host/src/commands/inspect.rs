//! `host inspect`: shows a model file's layers, the RAM it needs and the boards it fits.

use std::path::PathBuf;

use clap::Args;
use tinycnn_host::deploy::inspect;

use super::emit;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A tinycnn model file, f32 or int8.
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let inspection = inspect::run(&args.model)?;
    if args.json {
        emit(format!("{}\n", serde_json::to_string(&inspection)?));
    } else {
        emit(inspection.to_text());
    }
    Ok(())
}
