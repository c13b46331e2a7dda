//! `host predict`: classifies pictures or test-set images and prints the class.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tinycnn_host::deploy::predict;

use super::{DataDir, ModelArg, emit};

#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Pictures to classify: PNG (any bit depth, with or without alpha), JPEG, or PGM/PPM, up to
    /// 16384 pixels a side. For a network whose input is 28x28 grey (MNIST, Fashion-MNIST) each
    /// is prepared as MNIST's digits were: transparent pixels take the background's colour, a
    /// light border means dark ink on light paper, which is inverted, and the ink is cropped,
    /// scaled to fit 20x20 and placed in 28x28 with its centre of mass at the centre. Other
    /// networks (colour, other sizes) get the picture padded to a square with its background
    /// and resized, inverted only with --invert.
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Take every picture as dark ink on light paper and invert it, whatever its border says.
    #[arg(long, conflicts_with = "no_invert")]
    invert: bool,
    /// Take every picture as light ink on dark paper, whatever its border says.
    #[arg(long)]
    no_invert: bool,
    /// Only pad to a square and resize, inverting only with --invert: for pictures already in
    /// MNIST's form (28x28, light ink on black).
    #[arg(long)]
    raw: bool,
    /// Print one JSON object per input, one a line, in order: "file" (or "test_image" and "label"),
    /// "class", "probability" (the class's), "probabilities" (all classes'), "warnings"; an input
    /// that failed has "error" instead of the class and probabilities.
    #[arg(long)]
    json: bool,
    /// Also classify test-set image N (repeat for several); needs the data directory.
    #[arg(long = "index", value_name = "N")]
    indices: Vec<usize>,
    #[command(flatten)]
    data: DataDir,
}

/// Every input's result or error; exit status 1 when any failed.
pub(crate) fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    let polarity = if args.invert {
        predict::Polarity::DarkInk
    } else if args.no_invert {
        predict::Polarity::LightInk
    } else {
        predict::Polarity::Auto
    };
    let predictions = predict::run(&predict::PredictOptions {
        model: args.model.model.clone(),
        pictures: args.images.clone(),
        preparation: predict::Preparation {
            polarity,
            raw: args.raw,
        },
        indices: args.indices.clone(),
        // Only test-set images need the data set.
        data_dir: if args.indices.is_empty() {
            args.data.path()
        } else {
            args.data.ready(args.json)?
        },
        fit: args.data.fit.unwrap_or_default(),
        skip_damaged: args.data.skip_damaged,
    })?;
    let mut failed = false;
    for prediction in &predictions {
        for warning in &prediction.warnings {
            eprintln!("warning: {warning}");
        }
        if let Err(error) = &prediction.outcome {
            eprintln!("error: {error}");
            failed = true;
        }
        if args.json {
            emit(format!("{}\n", prediction.to_json()));
        } else if let Some(line) = prediction.line() {
            emit(format!("{line}\n"));
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
