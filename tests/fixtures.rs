//! Data-driven test: every `fixtures/{messages,topic}/NAME.eml` goes through the real pipeline (on an
//! in-memory store holding the state its `NAME.expected.toml` asks for), once with its own
//! line endings and once with CRLF; verdict, reason, project and the kinds of mail queued must
//! match. On a mismatch `NAME.actual` is written beside the fixture. An empty folder fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secintake::pipeline::{Item, Outcome, Pipeline};
use secintake::reply::{ReplyKind, Templates};
use secintake::store::Store;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    verdict: String,
    reason: Option<String>,
    project: Option<String>,
    replies: Vec<String>,
    #[allow(dead_code)]
    note: Option<String>,
    #[serde(default)]
    given: Given,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Given {
    #[serde(default)]
    cases: Vec<String>,
    #[serde(default)]
    message_ids: BTreeMap<String, String>,
    #[serde(default)]
    offtopic_replies: Vec<String>,
    max_size: Option<usize>,
}

#[derive(Debug, PartialEq)]
struct Actual {
    verdict: String,
    reason: Option<String>,
    project: Option<String>,
    replies: Vec<String>,
}

fn strip(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

fn prepare(store: &Store, given: &Given) {
    let conn = store.conn();
    let mut cases: Vec<&String> = given.cases.iter().collect();
    cases.extend(given.message_ids.values());
    for (seq, id) in cases.iter().enumerate() {
        conn.execute(
            "INSERT OR IGNORE INTO cases (id, year, seq, project, state, reporter, subject, created_at, updated_at)
             VALUES (?1, 2026, ?2, 'tomcat', 'forwarded', 'reporter@example.com', 'earlier report', 0, 0)",
            rusqlite::params![id, 9000 + seq as i64],
        )
        .unwrap();
    }
    for (mid, case) in &given.message_ids {
        conn.execute(
            "INSERT INTO outbox (kind, auto_reply, case_id, rfc822_id, recipients, created_at, next_attempt, sent_at)
             VALUES ('ack', 1, ?1, ?2, '[]', 0, 0, 0)",
            rusqlite::params![case, strip(mid)],
        )
        .unwrap();
    }
    for mid in &given.offtopic_replies {
        conn.execute(
            "INSERT INTO outbox (kind, auto_reply, rfc822_id, recipients, created_at, next_attempt, sent_at)
             VALUES ('reject_question', 1, ?1, '[]', 0, 0, 0)",
            rusqlite::params![strip(mid)],
        )
        .unwrap();
    }
}

fn run_one(pipeline: &Pipeline, raw: Vec<u8>, given: &Given) -> Actual {
    let mut store = Store::open_in_memory().unwrap();
    prepare(&store, given);
    let item = Item {
        source: "local".into(),
        source_ref: "fixture".into(),
        raw,
    };
    let results = pipeline.process_batch(&mut store, &[item]).unwrap();
    let outcome = results.into_iter().next().unwrap().unwrap();
    let Outcome::Recorded(rec) = outcome else {
        panic!("fixture seen as a duplicate")
    };
    let mut replies: Vec<String> = rec
        .queued
        .iter()
        .map(|k| match k {
            // The fixtures call both team copies "forward".
            ReplyKind::Followup => "forward".to_string(),
            k => k.as_str().to_string(),
        })
        .collect();
    replies.sort();
    Actual {
        verdict: rec.verdict.verdict.as_str().into(),
        reason: rec.verdict.reason.map(|r| r.as_str().into()),
        project: rec.verdict.project.clone(),
        replies,
    }
}

#[test]
fn fixtures_match_their_expected_outcomes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let config = common::demo_config();
    let mut pipelines: BTreeMap<usize, Pipeline> = BTreeMap::new();
    let mut files: Vec<PathBuf> = ["messages", "topic"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flat_map(|rd| rd.map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let mut ran = 0;
    let mut failures = Vec::new();
    for eml in &files {
        let name = eml.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = eml.parent().unwrap();
        let expected_path = dir.join(format!("{name}.expected.toml"));
        let text =
            std::fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let exp: Expected = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let max = exp.given.max_size.unwrap_or(config.triage.max_message_size);
        let pipeline = pipelines.entry(max).or_insert_with(|| {
            let mut c = config.clone();
            c.triage.max_message_size = max;
            Pipeline::new(c, Templates::embedded())
        });
        let mut want_replies = exp.replies.clone();
        want_replies.sort();
        let want = Actual {
            verdict: exp.verdict.clone(),
            reason: exp.reason.clone(),
            project: exp.project.clone(),
            replies: want_replies,
        };
        let raw = std::fs::read(eml).unwrap();
        let mut mismatch = None;
        for (ending, bytes) in [("as-is", raw.clone()), ("crlf", secintake::reply::crlf(&raw))] {
            let got = run_one(pipeline, bytes, &exp.given);
            ran += 1;
            if got != want && mismatch.is_none() {
                mismatch = Some((ending, got));
            }
        }
        let actual_path = dir.join(format!("{name}.actual"));
        match mismatch {
            Some((ending, got)) => {
                let _ = std::fs::write(&actual_path, format!("# line endings: {ending}\n{got:#?}\n"));
                failures.push(format!("{name} ({ending}): want {want:?}\n      got  {got:?}"));
            }
            None => {
                let _ = std::fs::remove_file(&actual_path);
            }
        }
    }
    assert!(
        ran >= 120,
        "only {ran} fixture runs: the fixture folder is missing or nearly empty"
    );
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
}

/// The topic prefilter (an Aho-Corasick pass over the rules' literal prefixes) must never
/// change a decision: on every fixture, prefiltered and unfiltered scoring agree exactly.
#[test]
fn topic_prefilter_changes_nothing() {
    let rules = secintake::classify::topic::TopicRules::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut n = 0;
    for dir in ["messages", "topic", "inbox"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "eml") {
                continue;
            }
            let msg = secintake::parse::parse(&std::fs::read(&p).unwrap());
            let (a, b) = (rules.score(&msg), rules.score_unfiltered(&msg));
            assert_eq!(a.offtopic, b.offtopic, "{}", p.display());
            assert_eq!(a.signals, b.signals, "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 190, "only {n} fixtures");
}
