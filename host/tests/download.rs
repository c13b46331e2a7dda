//! Downloading the data set, end to end through the `host` binary, against an HTTP server on
//! 127.0.0.1 that serves the MNIST `.gz` files of `$MNIST_DIR` (or ../shared/data/mnist beside
//! the checkout) and misbehaves on request.
//! Nothing here reaches beyond loopback: every run is given `--mirror` URLs of that server.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::Duration;

use assert_cmd::Command;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn mnist_dir() -> PathBuf {
    let dir = std::env::var_os("MNIST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist"),
        PathBuf::from,
    );
    assert!(
        dir.join(FILES[0]).is_file(),
        "MNIST is expected at {} (the shared data folder beside the checkout)",
        dir.display()
    );
    dir
}

/// A mirror on loopback. The first path segment says how it behaves:
/// `good` serves the file; `wrong` serves another valid gzip file (the labels) instead;
/// `corrupt` flips a byte in the middle; `truncated` announces the full length and closes
/// half-way; `stall` sends the headers and a few bytes, then nothing for 20 s; anything else
/// answers 404.
struct Mirror {
    port: u16,
}

impl Mirror {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files = mnist_dir();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = files.clone();
                thread::spawn(move || serve(stream, &files));
            }
        });
        Self { port }
    }

    fn url(&self, mode: &str) -> String {
        format!("http://127.0.0.1:{}/{mode}/", self.port)
    }
}

fn serve(mut stream: TcpStream, files: &Path) {
    let mut request = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (mode, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = match (mode, FILES.contains(&name)) {
        ("good" | "corrupt" | "truncated" | "stall", true) => std::fs::read(files.join(name)),
        ("wrong", true) => std::fs::read(files.join("train-labels-idx1-ubyte.gz")),
        _ => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    };
    let mut body = body.unwrap();
    if mode == "corrupt" {
        let middle = body.len() / 2;
        body[middle] ^= 0x55;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = match mode {
        "truncated" => stream.write_all(&body[..body.len() / 2]),
        "stall" => {
            let _ = stream.write_all(&body[..1000.min(body.len())]);
            thread::sleep(Duration::from_secs(20));
            Ok(())
        }
        _ => stream.write_all(&body),
    };
}

fn host() -> Command {
    let mut command = Command::cargo_bin("host").expect("the host binary is built");
    command
        .env_remove("MNIST_DIR")
        .env_remove("TINYCNN_MIRRORS")
        .env_remove("TINYCNN_NO_DOWNLOAD")
        // However a test goes wrong, it does not hang CI.
        .timeout(Duration::from_secs(120));
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `host data --download --data DIR` with the given mirrors.
fn download(dir: &Path, mirrors: &[String], extra: &[&str]) -> Output {
    let mut command = host();
    command.args(["data", "--download", "--data"]).arg(dir);
    for mirror in mirrors {
        command.arg("--mirror").arg(mirror);
    }
    command.args(extra).output().unwrap()
}

/// Names in `dir`, sorted; none if it does not exist.
fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sorted_files() -> Vec<String> {
    let mut names: Vec<String> = FILES.iter().map(|name| name.to_string()).collect();
    names.sort();
    names
}

#[test]
fn a_clean_download_is_verified_and_then_used() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    let output = download(&data, &[mirror.url("good")], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("canonical MNIST, SHA-256 verified"),
        "{stdout}"
    );
    assert!(stderr(&output).contains("4 of the MNIST files downloaded"));
    assert_eq!(listing(&data), sorted_files(), "no partial files are left");
    for name in FILES {
        assert_eq!(
            std::fs::read(data.join(name)).unwrap(),
            std::fs::read(mnist_dir().join(name)).unwrap()
        );
    }

    // A second run finds the files and fetches nothing (the mirror is gone by then).
    let output = download(&data, &["http://127.0.0.1:1/".to_string()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("downloaded"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_wrong_or_corrupted_file_falls_back_to_the_next_mirror() {
    let mirror = Mirror::start();
    for bad in ["wrong", "corrupt"] {
        let dir = tempfile::tempdir().unwrap();
        let output = download(dir.path(), &[mirror.url(bad), mirror.url("good")], &[]);
        assert!(output.status.success(), "{bad}: {}", stderr(&output));
        let log = stderr(&output);
        let expected = if bad == "wrong" {
            "wrong content (SHA-256"
        } else {
            "not a valid gzip file"
        };
        assert!(log.contains(expected), "{bad}: {log}");
        assert_eq!(listing(dir.path()), sorted_files());
    }
}

#[test]
fn failures_name_the_file_every_mirror_and_what_was_wrong_and_leave_nothing() {
    let mirror = Mirror::start();
    let cases: [(&str, &[&str], &str); 3] = [
        ("truncated", &[], "ended after"),
        ("missing", &[], "HTTP 404"),
        ("stall", &["--stall-timeout", "1"], "timed out"),
    ];
    for (mode, extra, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("mnist");
        let mirrors = [mirror.url(mode), "http://127.0.0.1:1/".to_string()];
        let output = download(&data, &mirrors, extra);
        assert_eq!(output.status.code(), Some(1), "{mode}: {}", stderr(&output));
        let log = stderr(&output);
        let error = log
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("{mode}: no error line in {log}"));
        assert!(
            error.contains("train-images-idx3-ubyte.gz"),
            "{mode}: {error}"
        );
        assert!(error.contains(&mirror.url(mode)), "{mode}: {error}");
        assert!(error.contains(reason), "{mode}: {error}");
        assert!(
            error.contains("127.0.0.1:1/"),
            "the second mirror too: {error}"
        );
        assert!(error.contains("--data"), "{mode}: {error}");
        assert!(!data.exists(), "{mode}: left {:?}", listing(&data));
    }
}

#[test]
fn a_target_that_cannot_be_written_is_an_error_not_a_crash() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let output = download(&file.join("mnist"), &[mirror.url("good")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.contains("cannot download into"), "{log}");
    assert!(log.contains("writable directory"), "{log}");

    // A read-only directory. Root ignores permissions, so there the case above stands alone.
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    set_mode(&read_only, 0o555);
    let writable_anyway = std::fs::write(read_only.join("probe"), "").is_ok();
    if !writable_anyway {
        let output = download(&read_only, &[mirror.url("good")], &[]);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains("cannot download into"));
    }
    set_mode(&read_only, 0o755);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn no_download_never_fetches() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    for (flag, env) in [(Some("--no-download"), None), (None, Some("1"))] {
        let mut command = host();
        command
            .args(["data", "--data"])
            .arg(&data)
            .args(["--mirror", &mirror.url("good")]);
        command.args(flag);
        if let Some(value) = env {
            command.env("TINYCNN_NO_DOWNLOAD", value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stderr(&output).contains("downloading is off"),
            "{}",
            stderr(&output)
        );
        assert!(!data.exists());
    }
}

/// An archive's data set (CIFAR-10, Speech Commands) absent with downloading off: an error that
/// names that set and the directory, not the MNIST one.
#[test]
fn no_download_names_the_missing_archive_set() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (dataset, title) in [
        ("cifar10", "no CIFAR-10 in"),
        ("speech-commands", "no Speech Commands v0.02 in"),
    ] {
        for (data, problem) in [
            (dir.path().join("absent"), "does not exist"),
            (empty.clone(), "is empty"),
        ] {
            let output = host()
                .args(["data", "--no-download", "--dataset", dataset, "--data"])
                .arg(&data)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(1));
            let message = stderr(&output);
            assert!(
                message.contains(title) && message.contains(problem),
                "{dataset}, {problem}: {message}"
            );
            assert!(!message.contains("MNIST"), "{message}");
        }
    }
}

#[test]
fn train_without_data_fetches_verifies_and_trains() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let output = host()
        .current_dir(dir.path())
        .args(["train", "--quiet", "--epochs", "1", "--limit", "256"])
        .args([
            "--test-limit",
            "128",
            "--out",
            "run",
            "--mirror",
            &mirror.url("good"),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(listing(&dir.path().join("data/mnist")), sorted_files());
    assert!(dir.path().join("run/model-int8.tcnn").is_file());
}
