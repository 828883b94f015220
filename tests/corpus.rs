//! Corpus sweep: every message of the real collections under `$SECINTAKE_CORPORA` goes through
//! the whole pipeline (parse, classify, reply building, store) without a panic and gets a
//! verdict; the labelled parts are asserted:
//!
//! - every message under `bounces-*` (except sisimai's `maildir/not/` and CwsMailBounceHandler's
//!   `unknown_*`, which are labelled unclassifiable) is ignored: no automatic reply, ever;
//! - crypto-kde-mimetreeparser's encrypted files are `encrypted` (unless ignored as automated),
//!   and its signed-only files are never called encrypted.
//!
//! Two shortcuts are checked against the plain way on every message: the topic prefilter
//! (same signals as every rule over all the text) and the cutting of long base64 bodies
//! before parsing (same parse as decoding them whole).
//!
//! The corpora cannot be copied into the repository (some licences forbid it), so CI points
//! `SECINTAKE_CORPORA` at them. Unset, this test says loudly that it did not run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secintake::classify::{Kind, Reason};
use secintake::fetch::local::LocalSource;
use secintake::pipeline::{Item, Outcome, Pipeline};
use secintake::reply::Templates;
use secintake::store::Store;

const NOT_MAIL: &[&str] = &[
    "SOURCE.txt",
    "FEATURES.tsv",
    "LABELS.tsv",
    "LICENSE",
    "README",
    "README.md",
    "SOURCES.md",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if !NOT_MAIL.iter().any(|n| p.file_name().is_some_and(|f| f == *n)) {
            out.push(p);
        }
    }
}

#[derive(Default)]
struct Tally {
    messages: usize,
    per_verdict: BTreeMap<String, usize>,
    violations: Vec<String>,
}

#[test]
fn corpus_sweep() {
    let Some(root) = std::env::var_os("SECINTAKE_CORPORA") else {
        eprintln!(
            "\n*** corpus sweep DID NOT RUN: SECINTAKE_CORPORA is not set (CI sets it to ../shared/corpora) ***\n"
        );
        println!("*** corpus sweep DID NOT RUN: SECINTAKE_CORPORA is not set ***");
        return;
    };
    let root = PathBuf::from(root);
    assert!(root.is_dir(), "SECINTAKE_CORPORA={} is not a folder", root.display());
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(all.len() > 1000, "only {} files under {}", all.len(), root.display());

    let pipeline = Pipeline::new(common::demo_config(), Templates::embedded());
    let topic = secintake::classify::topic::TopicRules::new();
    let mut prefilter_mismatches = Vec::new();
    let mut elision_mismatches = Vec::new();
    let mut tally = Tally::default();
    for chunk in all.chunks(200) {
        // A fresh store per chunk keeps memory flat; duplicates across chunks do not matter here.
        let mut store = Store::open_in_memory().unwrap();
        let items: Vec<(PathBuf, Item)> = chunk
            .iter()
            .flat_map(|p| {
                LocalSource::new(std::slice::from_ref(p)).map(move |r| (p.clone(), r.expect("corpus file readable")))
            })
            .collect();
        let batch: Vec<Item> = items.iter().map(|(_, i)| i.clone()).collect();
        let results = pipeline.process_batch(&mut store, &batch).expect("batch commits");
        for ((path, item), result) in items.iter().zip(results) {
            tally.messages += 1;
            let msg = secintake::parse::parse(&item.raw);
            if topic.score(&msg).signals != topic.score_unfiltered(&msg).signals {
                prefilter_mismatches.push(item.source_ref.clone());
            }
            if format!("{msg:?}") != format!("{:?}", secintake::parse::parse_whole(&item.raw)) {
                elision_mismatches.push(item.source_ref.clone());
            }
            let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            let outcome = result.unwrap_or_else(|e| panic!("{}: not recorded: {e}", item.source_ref));
            let Outcome::Recorded(rec) = outcome else {
                *tally.per_verdict.entry("duplicate".into()).or_default() += 1;
                continue;
            };
            let v = &rec.verdict;
            let word = format!(
                "{}{}",
                v.verdict.as_str(),
                v.reason.map(|r| format!("/{}", r.as_str())).unwrap_or_default()
            );
            *tally.per_verdict.entry(word.clone()).or_default() += 1;
            check_label(
                &rel,
                &item.source_ref,
                v.verdict,
                v.reason,
                &word,
                &mut tally.violations,
            );
        }
    }
    println!("corpus sweep: {} messages from {} files", tally.messages, all.len());
    for (k, n) in &tally.per_verdict {
        println!("  {n:6}  {k}");
    }
    assert!(tally.messages >= all.len(), "fewer messages than files");
    assert!(
        prefilter_mismatches.is_empty(),
        "the topic prefilter changed: {prefilter_mismatches:?}"
    );
    assert!(
        elision_mismatches.is_empty(),
        "cutting long base64 bodies changed the parse: {elision_mismatches:?}"
    );
    assert!(
        tally.violations.is_empty(),
        "{} labelled messages got the wrong verdict:\n  {}",
        tally.violations.len(),
        tally.violations.join("\n  ")
    );
}

fn check_label(
    rel: &str,
    source_ref: &str,
    kind: Kind,
    reason: Option<Reason>,
    word: &str,
    violations: &mut Vec<String>,
) {
    let name = Path::new(rel).file_name().unwrap().to_string_lossy().into_owned();
    if rel.starts_with("bounces-") {
        // Not bounces by their own labels: sisimai's maildir/not/, Cws's unknown_*; and not mail
        // at all: sisimai's mailbox/size-N (0-2 byte files), cfortune's unsubscribe.txt (a log).
        let unlabelled = rel.contains("/maildir/not/")
            || name.starts_with("unknown_")
            || rel.contains("/mailbox/size-")
            || name == "unsubscribe.txt";
        if !unlabelled && kind != Kind::Ignore {
            violations.push(format!("{source_ref}: a bounce/auto-reply got {word}"));
        }
    }
    if rel.starts_with("crypto-kde-mimetreeparser/") {
        let encrypted = name.contains("encrypted") && !name.starts_with("signed-forward");
        if encrypted && kind != Kind::Ignore && reason != Some(Reason::Encrypted) {
            violations.push(format!("{source_ref}: encrypted mail got {word}"));
        }
        let signed_only = [
            "openpgp-signed",
            "openpgp-inline-signed",
            "smime-signed",
            "smime-opaque-sign.",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            && !name.contains("encrypted");
        if signed_only && reason == Some(Reason::Encrypted) {
            violations.push(format!("{source_ref}: signed (not encrypted) mail called encrypted"));
        }
    }
}
