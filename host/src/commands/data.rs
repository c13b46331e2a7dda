//! `host data`: shows the data set (pictures per split and class, their shape, what was ignored,
//! one training picture and its class) and can draw a contact sheet of it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tinycnn::arch::Shape;
use tinycnn_host::atomic;
use tinycnn_host::data::{self, DataSet};

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
    /// The size and channels to convert folders of pictures to, as HEIGHTxWIDTHxCHANNELS (e.g.
    /// 32x32x3) [default: the pictures' own, which must then all be of one size].
    #[arg(long, value_name = "SHAPE", value_parser = parse_shape)]
    input: Option<Shape>,
    /// Also draw the first ten training pictures of each class (up to twenty classes, a class a
    /// row) into FILE, a PNG.
    #[arg(long, value_name = "FILE")]
    sheet: Option<PathBuf>,
}

fn parse_shape(text: &str) -> Result<Shape, String> {
    let sides: Vec<usize> = text
        .split('x')
        .map(|side| side.parse::<usize>().ok().filter(|&side| side > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("`{text}` is not HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3"))?;
    match sides.as_slice() {
        &[height, width, channels] => Ok(Shape::new(height, width, channels)),
        _ => Err(format!(
            "`{text}` is not HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3"
        )),
    }
}

pub(crate) fn run(args: &DataArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data.ready(false)?;
    let data = DataSet::load(&dir, &args.data.folder_options(args.input, true))?;
    if args.download {
        emit(format!("{}\n", data.describe()));
        return Ok(ExitCode::SUCCESS);
    }
    let shown = print_report(data::show(&data, args.index))?;
    if let Some(path) = &args.sheet {
        let png = data::contact_sheet(&data)?;
        atomic::write(path, &png).with_context(|| format!("{}: cannot write", path.display()))?;
        emit(format!("wrote {}\n", path.display()));
    }
    Ok(shown)
}
