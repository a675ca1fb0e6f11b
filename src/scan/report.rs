//! Output formats (a table, JSON, SARIF 2.1.0) and baselines.
//!
//! Every format carries the masked preview and the fingerprint, never a
//! secret.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::walk::Outcome;
use super::{Finding, Severity, RULES};

/// The largest baseline file read.
pub const MAX_BASELINE_BYTES: u64 = 16 << 20;
/// The most fingerprints a baseline may hold.
pub const MAX_BASELINE_ENTRIES: usize = 200_000;

/// The fingerprints of accepted findings: a JSON report of an earlier run
/// (`scan --format json > .secrets.baseline`).
pub fn load_baseline(path: &Path) -> Result<HashSet<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("baseline {shown}: {e}"))?;
    if meta.len() > MAX_BASELINE_BYTES {
        return Err(format!(
            "baseline {shown}: larger than {MAX_BASELINE_BYTES} bytes"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("baseline {shown}: {e}"))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| format!("baseline {shown}: not JSON: {e}"))?;
    let findings = doc
        .get("findings")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!("baseline {shown}: no `findings` array (write one with `scan --format json`)")
        })?;
    if findings.len() > MAX_BASELINE_ENTRIES {
        return Err(format!(
            "baseline {shown}: more than {MAX_BASELINE_ENTRIES} findings"
        ));
    }
    findings
        .iter()
        .map(|f| {
            f.get("fingerprint")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("baseline {shown}: a finding without `fingerprint`"))
        })
        .collect()
}

/// A readable table, secrets masked.
pub fn table(outcome: &Outcome, shown: &[&Finding]) -> String {
    let mut s = String::new();
    if shown.is_empty() {
        let _ = writeln!(s, "no secrets found");
    } else {
        let loc_width = shown
            .iter()
            .map(|f| f.path.len() + digits(f.line) + 1)
            .max()
            .unwrap_or(0)
            .clamp(8, 60);
        let _ = writeln!(
            s,
            "{:<8}  {:<4}  {:<loc_width$}  {:<28}  PREVIEW",
            "SEVERITY", "CONF", "LOCATION", "RULE"
        );
        for f in shown {
            let location = format!("{}:{}", f.path, f.line);
            let _ = writeln!(
                s,
                "{:<8}  {:<4.2}  {:<loc_width$}  {:<28}  {}",
                f.severity.as_str(),
                f.confidence,
                location,
                f.rule,
                f.preview
            );
        }
    }
    let _ = writeln!(
        s,
        "{} finding(s) in {} file(s) scanned, {} skipped{}",
        shown.len(),
        outcome.files_scanned,
        outcome.files_skipped,
        if outcome.truncated {
            " (stopped at --max-files)"
        } else {
            ""
        }
    );
    s
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

/// The JSON report (also a baseline).
pub fn json(outcome: &Outcome, shown: &[&Finding]) -> String {
    let doc = json!({
        "version": 1,
        "files_scanned": outcome.files_scanned,
        "files_skipped": outcome.files_skipped,
        "truncated": outcome.truncated,
        "findings": shown,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// SARIF 2.1.0 for code-scanning UIs.
pub fn sarif(shown: &[&Finding]) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.description},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {
                    "security-severity": security_severity(r.severity),
                    "tags": ["security", "secret"],
                },
            })
        })
        .collect();
    let results: Vec<Value> = shown
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|r| r.id == f.rule),
                "level": level(f.severity),
                "message": {"text": format!("{} ({}): {}", f.description, f.severity.as_str(), f.preview)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.path},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
                "partialFingerprints": {"secretFingerprint/v1": f.fingerprint},
                "properties": {"severity": f.severity.as_str(), "confidence": f.confidence},
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "secret-manager scan",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}
