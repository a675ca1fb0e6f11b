//! `secret-manager scan`: arguments, output and exit code.
//!
//! Exit 0: nothing at or above `--fail-on`; 1: findings at or above it;
//! 2: a usage error (bad arguments, a missing path, an unreadable baseline,
//! not a git repository for `--staged`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::report;
use super::walk::{self, Limits};
use super::{Finding, Managed, Scanner, Severity};

/// Asks the server which candidates (SHA-256 digests) are managed secrets.
pub type Matcher<'a> = &'a dyn Fn(&[String]) -> Result<Vec<Managed>, String>;

/// Digests per `POST /api/scan/match` (the server's limit).
const MATCH_BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` reads standard input.
    #[arg(required_unless_present = "staged", conflicts_with = "staged")]
    pub paths: Vec<PathBuf>,
    /// Scan what is staged in the git index (for a pre-commit hook).
    #[arg(long)]
    pub staged: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, default_value = "low")]
    pub fail_on: Severity,
    /// Hide findings below this confidence (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub min_confidence: f64,
    /// Accept the findings of an earlier `--format json` report.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub max_file_size: u64,
    /// Stop after this many files.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_files: u64,
}

/// Runs the scan and prints the report; with `matcher`, findings that are
/// managed secrets are marked (see `apply_matches`).
pub fn run(args: ScanArgs, matcher: Option<Matcher<'_>>) -> ExitCode {
    match scan(&args, matcher) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secret-manager scan: {e}");
            ExitCode::from(2)
        }
    }
}

fn scan(args: &ScanArgs, matcher: Option<Matcher<'_>>) -> Result<ExitCode, String> {
    if !(0.0..=1.0).contains(&args.min_confidence) {
        return Err("--min-confidence must be between 0 and 1".into());
    }
    let baseline = match &args.baseline {
        Some(p) => report::load_baseline(p)?,
        None => Default::default(),
    };
    let scanner = Scanner::new().map_err(|e| format!("rules: {e}"))?;
    let limits = Limits {
        max_file_size: args.max_file_size,
        max_files: usize::try_from(args.max_files).unwrap_or(usize::MAX),
    };
    let mut outcome = if args.staged {
        walk::scan_staged(&scanner, &limits)?
    } else {
        walk::scan_paths(&scanner, &args.paths, &limits)?
    };
    if let Some(matcher) = matcher {
        let mut digests: Vec<String> = outcome
            .findings
            .iter()
            .map(|f| f.value_sha256.clone())
            .collect();
        digests.sort();
        digests.dedup();
        let mut managed = Vec::new();
        for chunk in digests.chunks(MATCH_BATCH) {
            managed.extend(matcher(chunk).map_err(|e| format!("--check-vault: {e}"))?);
        }
        super::apply_matches(&mut outcome.findings, &managed);
    }
    let shown: Vec<&Finding> = outcome
        .findings
        .iter()
        .filter(|f| f.confidence >= args.min_confidence && !baseline.contains(&f.fingerprint))
        .collect();
    let text = match args.format {
        Format::Table => report::table(&outcome, &shown),
        Format::Json => report::json(&outcome, &shown),
        Format::Sarif => report::sarif(&shown),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let failing = shown.iter().any(|f| f.severity >= args.fail_on);
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
