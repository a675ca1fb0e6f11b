#!/usr/bin/env python3
"""Precision, recall and files/s of `secret-manager scan` and detect-secrets
on the labelled corpus (tests/fixtures/scan/corpus, see its README).

Materialises the corpus COPIES times into a temporary directory, runs each
scanner once over the whole directory (wall time, process start included),
and scores each (file, line) a scanner flags against the labels: a flagged
labelled line is a true positive, a flagged unlabelled line a false
positive, an unflagged labelled line a false negative.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

LEAK = "@@leak@@"
SPLIT = "~~"


def materialise(corpus, out, copies):
    labels = set()
    files = 0
    for copy in range(copies):
        for dirpath, _, names in os.walk(corpus):
            for name in names:
                src = os.path.join(dirpath, name)
                rel = os.path.relpath(src, corpus)
                parts = rel.split(os.sep)
                parts[-1] = "." + parts[-1][4:] if parts[-1].startswith("dot.") else parts[-1]
                rel = os.path.join(f"copy{copy}", *parts)
                lines = []
                with open(src, encoding="utf-8") as f:
                    for number, line in enumerate(f.read().split("\n"), start=1):
                        if line.endswith(LEAK):
                            labels.add((rel, number))
                            line = line[: -len(LEAK)]
                        lines.append(line.replace(SPLIT, ""))
                dst = os.path.join(out, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines))
                files += 1
    return labels, files


def timed(cmd, cwd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc, time.perf_counter() - start


def ours(binary, root):
    proc, secs = timed([binary, "scan", "--format", "json", "--max-files", "10000000", "."], root)
    if proc.returncode not in (0, 1):
        sys.exit(f"secret-manager scan failed ({proc.returncode}): {proc.stderr}")
    doc = json.loads(proc.stdout)
    return {(f["path"], f["line"]) for f in doc["findings"]}, secs


def detect_secrets(binary, root):
    proc, secs = timed([binary, "scan", "--all-files", "."], root)
    if proc.returncode != 0:
        sys.exit(f"detect-secrets failed ({proc.returncode}): {proc.stderr}")
    doc = json.loads(proc.stdout)
    flagged = set()
    for path, results in doc["results"].items():
        for r in results:
            flagged.add((os.path.normpath(path), r["line_number"]))
    return flagged, secs


def score(flagged, labels):
    tp = len(flagged & labels)
    fp = len(flagged - labels)
    fn = len(labels - flagged)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return tp, fp, fn, precision, recall


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the secret-manager binary")
    p.add_argument("--detect-secrets", required=True, help="the detect-secrets command")
    p.add_argument("--copies", type=int, default=40)
    p.add_argument("--corpus", default=os.path.join(here, "..", "tests", "fixtures", "scan", "corpus"))
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="scan-bench.")
    try:
        labels, files = materialise(args.corpus, root, args.copies)
        version = subprocess.run([args.detect_secrets, "--version"], capture_output=True, text=True).stdout.strip()
        rows = []
        for name, run, binary in (
            ("secret-manager scan", ours, args.bin),
            (f"detect-secrets {version}", detect_secrets, args.detect_secrets),
        ):
            flagged, secs = run(binary, root)
            tp, fp, fn, precision, recall = score(flagged, labels)
            rows.append((name, tp, fp, fn, precision, recall, files / secs, secs))
        print(f"corpus: {files} files ({args.copies} copies), {len(labels)} labelled secrets")
        print()
        print("| scanner | TP | FP | FN | precision | recall | files/s | wall s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, tp, fp, fn, precision, recall, fps, secs in rows:
            print(f"| {name} | {tp} | {fp} | {fn} | {precision:.3f} | {recall:.3f} | {fps:.0f} | {secs:.2f} |")
        print()
        print(f"speed-up: {rows[0][6] / rows[1][6]:.1f}x detect-secrets' files/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
