//! What to scan: files and directories (honouring `.gitignore` and
//! `.secretsignore`), standard input, or the git index (`--staged`).
//!
//! Every size a caller controls is bounded: a file over `max_file_size` is
//! skipped (standard input and staged blobs are read no further), and no more
//! than `max_files` files are read.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Finding, Scanner};

/// The name of the ignore file read beside `.gitignore`.
pub const SECRETS_IGNORE: &str = ".secretsignore";

/// Limits on what is read.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 1 << 20,
            max_files: 100_000,
        }
    }
}

/// What a scan found and what it read.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub files_scanned: usize,
    /// Binary, too large, or unreadable.
    pub files_skipped: usize,
    /// `max_files` was reached before the walk ended.
    pub truncated: bool,
}

impl Outcome {
    fn take(&mut self, scanner: &Scanner, label: &str, bytes: &[u8]) {
        if is_binary(bytes) {
            self.files_skipped += 1;
            return;
        }
        self.files_scanned += 1;
        let text = String::from_utf8_lossy(bytes);
        self.findings.extend(scanner.scan_text(label, &text));
    }

    fn full(&mut self, limits: &Limits) -> bool {
        if self.files_scanned + self.files_skipped >= limits.max_files {
            self.truncated = true;
        }
        self.truncated
    }
}

/// A NUL byte in the first 8 KiB: not text.
fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

/// Scans each path: `-` is standard input, a directory is walked.
pub fn scan_paths(
    scanner: &Scanner,
    paths: &[PathBuf],
    limits: &Limits,
) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let bytes = read_bounded(std::io::stdin().lock(), limits.max_file_size)
                .map_err(|e| format!("standard input: {e}"))?;
            match bytes {
                Some(b) => out.take(scanner, "<stdin>", &b),
                None => out.files_skipped += 1,
            }
            continue;
        }
        if !path.exists() {
            return Err(format!("{}: no such file or directory", path.display()));
        }
        walk(scanner, path, limits, &mut out);
        if out.truncated {
            break;
        }
    }
    Ok(out)
}

fn walk(scanner: &Scanner, root: &Path, limits: &Limits, out: &mut Outcome) {
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .add_custom_ignore_filename(SECRETS_IGNORE)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let Ok(entry) = entry else {
            out.files_skipped += 1;
            continue;
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        if out.full(limits) {
            return;
        }
        let path = entry.path();
        let too_big = entry
            .metadata()
            .map_or(true, |m| m.len() > limits.max_file_size);
        if too_big {
            out.files_skipped += 1;
            continue;
        }
        match std::fs::File::open(path).and_then(|f| read_bounded(f, limits.max_file_size)) {
            Ok(Some(bytes)) => out.take(scanner, &label(path), &bytes),
            _ => out.files_skipped += 1,
        }
    }
}

fn label(path: &Path) -> String {
    let shown = path.strip_prefix("./").unwrap_or(path);
    shown.to_string_lossy().into_owned()
}

/// At most `max` bytes; `None` when there are more.
fn read_bounded(reader: impl std::io::Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Scans what is staged in the git index of the repository around the
/// current directory: the staged content, not the working copy.
/// `.secretsignore` at the repository root applies.
pub fn scan_staged(scanner: &Scanner, limits: &Limits) -> Result<Outcome, String> {
    let root = git(&["rev-parse", "--show-toplevel"])?;
    let root = PathBuf::from(String::from_utf8_lossy(&root).trim_end());
    let names = git(&[
        "diff",
        "--cached",
        "--name-only",
        "-z",
        "--diff-filter=ACMR",
    ])?;
    let mut ignore = ignore::gitignore::GitignoreBuilder::new(&root);
    let ignore_file = root.join(SECRETS_IGNORE);
    if ignore_file.is_file() {
        if let Some(e) = ignore.add(&ignore_file) {
            return Err(format!("{SECRETS_IGNORE}: {e}"));
        }
    }
    let ignore = ignore
        .build()
        .map_err(|e| format!("{SECRETS_IGNORE}: {e}"))?;
    let mut out = Outcome::default();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if ignore
            .matched_path_or_any_parents(root.join(&name), false)
            .is_ignore()
        {
            continue;
        }
        if out.full(limits) {
            break;
        }
        match staged_blob(&root, &name, limits.max_file_size)? {
            Some(bytes) => out.take(scanner, &name, &bytes),
            None => out.files_skipped += 1,
        }
    }
    Ok(out)
}

fn git(args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

/// The staged content of `name`, read no further than `max` bytes.
fn staged_blob(root: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
    let mut child = Command::new("git")
        .current_dir(root)
        .args(["cat-file", "blob", &format!(":{name}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("git: {e}"))?;
    let bytes = match child.stdout.take() {
        Some(stdout) => read_bounded(stdout, max).map_err(|e| format!("git cat-file: {e}"))?,
        None => None,
    };
    // A blob over the limit: stop git rather than read the rest.
    let _ = child.kill();
    let _ = child.wait();
    Ok(bytes)
}
