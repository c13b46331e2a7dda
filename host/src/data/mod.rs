//! The data sets: one [`DataSet`] whatever its source ([`set`]), read from IDX files ([`idx`]) in
//! a directory of the four MNIST-format files ([`mnist`]), from CIFAR-10's binary batch files
//! ([`cifar`]) or from folders of pictures ([`folders`]), and fetching a known set into a
//! directory that lacks it ([`download`]: MNIST and Fashion-MNIST file by file, CIFAR-10 as its
//! tarball, extracted).

mod archive;
pub mod audio;
pub mod cifar;
pub mod download;
pub mod folders;
pub mod idx;
#[cfg(test)]
mod loopback;
pub mod mnist;
pub mod set;
pub mod split;

use std::path::{Path, PathBuf};

pub use download::Dataset;
pub use folders::{Fit, FolderOptions};
pub use mnist::{Mnist, MnistError};
pub use set::{DataError, DataSet, Split};

use download::{FetchOptions, FetchProgress};

/// Makes sure `dir` holds `dataset`: downloads the files it lacks when `fetch` is given,
/// unless a file it does hold belongs to another data set (a user's own MNIST-format set is
/// never completed with another set's files, nor is any other kind of set given downloaded
/// files beside it). Returns the files downloaded; a directory that still lacks files is
/// reported by [`DataSet::load`].
pub fn ensure(
    dir: &Path,
    dataset: Dataset,
    fetch: Option<&FetchOptions>,
    progress: &mut dyn FetchProgress,
) -> Result<Vec<PathBuf>, download::FetchError> {
    if !dataset.is_idx() {
        // An archive's set is either there (its problems are the loader's to report) or
        // absent; extraction is all or nothing, so there is no part of one to complete.
        let other_data = folders::looks_like_idx(dir)
            || folders::has_folders(dir)
            || audio::looks_like_speech_commands(dir);
        let present = cifar::looks_like_cifar(dir) || other_data;
        return match fetch {
            Some(options) if !present => download::fetch(dataset, dir, &[], options, progress),
            None if !present => {
                let empty = std::fs::read_dir(dir).map(|mut entries| entries.next().is_none());
                let problem = match empty {
                    Err(_) => "does not exist or cannot be listed",
                    Ok(true) => "is empty",
                    // What it holds is the loader's to name.
                    Ok(false) => return Ok(Vec::new()),
                };
                Err(download::FetchError::Absent {
                    dataset,
                    dir: dir.to_path_buf(),
                    problem,
                })
            }
            _ => Ok(Vec::new()),
        };
    }
    let missing = download::missing(dir);
    let other_data = holds_folders(dir) || cifar::looks_like_cifar(dir);
    let Some(options) = fetch.filter(|_| !missing.is_empty() && !other_data) else {
        return Ok(Vec::new());
    };
    let present_are_the_datasets = mnist::Role::ALL
        .into_iter()
        .filter(|role| !missing.contains(role))
        .all(|role| download::is_dataset_file(dataset, role, dir));
    if !present_are_the_datasets {
        return Ok(Vec::new());
    }
    download::fetch(dataset, dir, &missing, options, progress)
}

/// Whether `dir` holds no IDX file but some folder: a set of folders of pictures, never
/// completed with downloaded files.
fn holds_folders(dir: &Path) -> bool {
    !folders::looks_like_idx(dir) && folders::has_folders(dir)
}

/// `host data`: what the data set holds (pictures per split and class, their shape, what was
/// ignored) and training picture `index`: as 0-255 values when it has one channel, with its
/// class.
pub fn show(data: &DataSet, index: usize) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}", data.describe());
    let shape = data.shape();
    let splits = [
        ("train", Some(&data.train)),
        ("test", Some(&data.test)),
        ("val", data.validation.as_ref()),
    ];
    for (name, split) in splits
        .into_iter()
        .filter_map(|(name, split)| Some((name, split?)))
    {
        let _ = writeln!(
            out,
            "{name} images: {}x{}x{}{}, {name} labels: {}",
            split.len(),
            shape.height,
            shape.width,
            if shape.channels == 1 {
                String::new()
            } else {
                format!("x{}", shape.channels)
            },
            split.labels.len(),
        );
    }
    let _ = writeln!(
        out,
        "classes: {} (a network for this set ends in dense:{})",
        data.classes(),
        data.classes()
    );
    if let set::Origin::Folders(report) = &data.origin {
        let (train, test) = (
            data.train.counts(data.classes()),
            data.test.counts(data.classes()),
        );
        let width = data
            .class_names
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(
            out,
            "  {:>5}  {:<width$}  {:>7}  {:>7}",
            "class", "name", "train", "test"
        );
        for (class, name) in data.class_names.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {class:>5}  {name:<width$}  {:>7}  {:>7}",
                train[class], test[class]
            );
        }
        let pictures =
            data.train.len() + data.test.len() + data.validation.as_ref().map_or(0, Split::len);
        let _ = writeln!(
            out,
            "listed, decoded and converted {pictures} pictures in {:.2} s ({:.0} a second, {} threads)",
            report.seconds,
            pictures as f64 / report.seconds.max(1e-9),
            rayon::current_num_threads()
        );
        for path in &report.ignored_examples {
            let _ = writeln!(out, "ignored (not a picture): {}", path.display());
        }
        if report.ignored > report.ignored_examples.len() {
            let _ = writeln!(
                out,
                "... and {} more ignored",
                report.ignored - report.ignored_examples.len()
            );
        }
        for (path, problem) in &report.skipped {
            let _ = writeln!(out, "left out (damaged): {}: {problem}", path.display());
        }
    }
    let Some(image) = data.train.image(index) else {
        anyhow::bail!(
            "--index {index} is past the last training image ({})",
            data.train.len().saturating_sub(1)
        );
    };
    let label = usize::from(data.train.labels[index]);
    let name = data.class_names.get(label).map_or("", String::as_str);
    if shape.channels == 1 {
        let _ = writeln!(out, "training image {index}:");
        out.push_str(&mnist::format_image(image, shape.width));
    }
    if name == label.to_string() {
        let _ = writeln!(out, "label: {label}");
    } else {
        let _ = writeln!(out, "label: {label} ({name})");
    }
    Ok(out)
}

/// Pictures per class on a contact sheet.
pub const SHEET_COLUMNS: usize = 10;
/// Classes on a contact sheet, at most.
pub const SHEET_ROWS: usize = 20;

/// A PNG of the first [`SHEET_COLUMNS`] training pictures of each of the first [`SHEET_ROWS`]
/// classes, a class a row, each picture enlarged to at least 56 pixels a side, on grey.
pub fn contact_sheet(data: &DataSet) -> anyhow::Result<Vec<u8>> {
    let shape = data.shape();
    let scale = (56 / shape.height.max(shape.width)).max(1) as u32;
    let (cell_w, cell_h) = (shape.width as u32 * scale, shape.height as u32 * scale);
    let gap = 4;
    let rows = data.classes().min(SHEET_ROWS) as u32;
    let mut sheet = image::RgbImage::from_pixel(
        SHEET_COLUMNS as u32 * (cell_w + gap) + gap,
        rows * (cell_h + gap) + gap,
        image::Rgb([128, 128, 128]),
    );
    let mut placed = vec![0u32; rows as usize];
    for (index, &label) in data.train.labels.iter().enumerate() {
        let row = u32::from(label);
        let Some(column) = placed.get_mut(row as usize) else {
            continue;
        };
        if *column as usize >= SHEET_COLUMNS {
            continue;
        }
        let Some(image) = data.train.image(index) else {
            continue;
        };
        let (left, top) = (gap + *column * (cell_w + gap), gap + row * (cell_h + gap));
        for y in 0..cell_h {
            for x in 0..cell_w {
                let at =
                    ((y / scale) as usize * shape.width + (x / scale) as usize) * shape.channels;
                let pixel = if shape.channels >= 3 {
                    [image[at], image[at + 1], image[at + 2]]
                } else {
                    [image[at]; 3]
                };
                sheet.put_pixel(left + x, top + y, image::Rgb(pixel));
            }
        }
        *column += 1;
    }
    let mut png = Vec::new();
    sheet.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}
