//! `host predict` on the printed-digit pictures of `tests/pictures/` (see its README): dark on
//! light and light on dark, centred and off centre, on transparent backgrounds, each digit 35 %
//! of the picture's height, classified by the shipped model with no flag. At least 95 % must be
//! right; the figures per condition are printed (`--nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// Share of the pictures to classify correctly.
const REQUIRED: f64 = 0.95;

fn pictures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pictures");
    let mut pictures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "png"))
        .collect();
    pictures.sort();
    pictures
}

/// `CONDITION-FONT-WxH-DIGIT.png` -> (condition, digit).
fn condition_and_label(path: &Path) -> (String, u64) {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let (rest, digit) = stem.rsplit_once('-').unwrap();
    let condition = ["dark-on-light", "light-on-dark", "transparent"]
        .iter()
        .find_map(|start| {
            let tail = rest.strip_prefix(start)?;
            let variant = ["-off", "-white", "-black"]
                .into_iter()
                .find(|variant| tail.starts_with(&format!("{variant}-")))
                .unwrap_or("");
            Some(format!("{start}{variant}"))
        })
        .unwrap_or_else(|| panic!("{}: unknown condition", path.display()));
    (condition, digit.parse().unwrap())
}

#[test]
fn printed_digits_are_classified_without_any_flag() {
    let pictures = pictures();
    assert!(pictures.len() >= 400, "{} pictures", pictures.len());
    let output = Command::cargo_bin("host")
        .unwrap()
        .args(["predict", "--json", "--model"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/model-int8.tcnn"
        ))
        .args(&pictures)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), pictures.len());

    // condition -> (right, all)
    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (path, line) in pictures.iter().zip(&lines) {
        assert_eq!(line["file"].as_str(), path.to_str());
        let (condition, label) = condition_and_label(path);
        let right = line["class"].as_u64() == Some(label);
        for key in [condition, "all".to_string()] {
            let entry = tally.entry(key).or_default();
            entry.0 += usize::from(right);
            entry.1 += 1;
        }
        if !right {
            wrong.push(format!("{}: class {}", path.display(), line["class"]));
        }
    }
    for (condition, (right, all)) in &tally {
        println!(
            "{condition:18} {right:3} of {all:3} ({:.1} %)",
            100.0 * *right as f64 / *all as f64
        );
    }
    let (right, all) = tally["all"];
    assert!(
        right as f64 >= REQUIRED * all as f64,
        "{right} of {all} right; wrong:\n{}",
        wrong.join("\n")
    );
}
