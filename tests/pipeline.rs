//! Pipeline and store behaviour over a file-backed database in a temporary folder: duplicates,
//! case ids, follow-ups, the team's own mail, rate limits, appeals, the outbox drain with the
//! file transport, crash safety, local sources and the case state machine.

mod common;

use std::path::{Path, PathBuf};

use common::{current_year, item, mail, question_mail, recorded, report_mail};
use secintake::classify::{Kind, Reason};
use secintake::fetch::local::LocalSource;
use secintake::pipeline::{Item, Outcome, Pipeline};
use secintake::reply::{ReplyKind, Templates};
use secintake::send::{self, DrainStats, RetryPolicy, Transport};
use secintake::store::{self, CaseState, Store, StoreError, cases, outbox};
use tempfile::TempDir;

/// A temporary folder with the demo config pointed into it, its store and a pipeline.
struct Env {
    dir: TempDir,
    store: Store,
    pipeline: Pipeline,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = common::demo_config_in(dir.path());
        let store = Store::open(&config.database).unwrap();
        Env {
            dir,
            store,
            pipeline: Pipeline::new(config, Templates::embedded()),
        }
    }

    fn db_path(&self) -> PathBuf {
        self.pipeline.config().database.clone()
    }

    fn process(&mut self, items: &[Item]) -> Vec<Result<Outcome, StoreError>> {
        let results = self
            .pipeline
            .process_batch(&mut self.store, items)
            .expect("batch commits");
        assert_eq!(results.len(), items.len(), "one result per item");
        results
    }

    /// Processes one item that must be recorded; returns the outcome's `Recorded`.
    fn record(&mut self, what: &str, item: Item) -> secintake::pipeline::Recorded {
        let results = self.process(&[item]);
        recorded(what, results.first().unwrap()).clone()
    }

    fn count(&self, sql: &str) -> i64 {
        count(&self.store, sql)
    }

    fn case_prefix(&self) -> String {
        self.pipeline.config().triage.case_prefix.clone()
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    store
        .conn()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn outbox_id(store: &Store, kind: &str) -> String {
    store
        .conn()
        .query_row(
            "SELECT rfc822_id FROM outbox WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
            [kind],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no {kind} in the outbox: {e}"))
}

fn event_kinds(store: &Store, case: &str) -> Vec<String> {
    cases::events(store.conn(), case)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn state(store: &Store, case: &str) -> CaseState {
    cases::state(store.conn(), case)
        .unwrap()
        .unwrap_or_else(|| panic!("no case {case}"))
}

fn report(n: u32) -> Vec<u8> {
    report_mail(
        "Igor Petrenko <igor@example.com>",
        &format!("report{n}@example.com"),
        "Tomcat HTTP/2: NullPointerException crash lets any client stop the connector",
        &[],
    )
}

/// A plain-text follow-up: `headers` plus a short body.
fn followup(headers: &[&str]) -> Vec<u8> {
    let mut h = vec![
        "To: security@example.org",
        "Date: Wed, 18 Mar 2026 09:00:00 +0200",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
    ];
    h.extend_from_slice(headers);
    mail(
        &h,
        "Hi,\r\n\r\none more detail: the crash also happens over h2c, not only h2.\r\n\r\nIgor\r\n",
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn drain(env: &mut Env, transport: &Transport) -> DrainStats {
    let policy = RetryPolicy::from_config(env.pipeline.config());
    runtime()
        .block_on(send::drain(&mut env.store, transport, &policy))
        .expect("drain")
}

/// `.eml` files in `dir` (no temporary or hidden files), sorted.
fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
}

fn all_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `(attempts, next_attempt, last_error, sent_at, failed_at)` of an outbox row.
type RetryRow = (i64, i64, String, Option<i64>, Option<i64>);

// ---------------------------------------------------------------------------------------------
// Duplicates.

#[test]
fn same_raw_message_in_two_batches_makes_one_case() {
    let mut env = Env::new();
    let raw = report(1);
    let first = env.record("first copy", item("local", "a.eml", raw.clone()));
    assert!(first.case.is_some(), "the report opens a case");
    let outbox_rows = env.count("SELECT COUNT(*) FROM outbox");

    for (source, source_ref) in [("local", "b.eml"), ("imap:sec@mail.example.org/INBOX", "7:1")] {
        let results = env.process(&[item(source, source_ref, raw.clone())]);
        match results.first().unwrap() {
            Ok(Outcome::Duplicate { of }) => assert_eq!(*of, first.message),
            other => panic!("the same bytes from {source} again: {other:?}"),
        }
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM cases"), 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM outbox"), outbox_rows);
}

#[test]
fn same_raw_message_twice_in_one_batch_makes_one_case() {
    let mut env = Env::new();
    let raw = report(1);
    let results = env.process(&[item("local", "a.eml", raw.clone()), item("local", "a-copy.eml", raw)]);
    let first = recorded("first copy", results.first().unwrap());
    match results.get(1).unwrap() {
        Ok(Outcome::Duplicate { of }) => assert_eq!(*of, first.message),
        other => panic!("second copy in the same batch: {other:?}"),
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM cases"), 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM outbox"), first.queued.len() as i64);
}

#[test]
fn same_message_id_with_other_bytes_is_a_duplicate_only_from_the_same_source() {
    let mut env = Env::new();
    let first = env.record("first", item("local", "a.eml", report(1)));
    // The same message as delivered by another hop: one more trace header, other bytes.
    let relayed = report_mail(
        "Igor Petrenko <igor@example.com>",
        "report1@example.com",
        "Tomcat HTTP/2: NullPointerException crash lets any client stop the connector",
        &["Received: from relay2.example.org by mx1.example.org; Tue, 17 Mar 2026 08:00:01 +0000"],
    );
    assert_ne!(relayed, report(1));
    let results = env.process(&[item("local", "b.eml", relayed.clone())]);
    match results.first().unwrap() {
        Ok(Outcome::Duplicate { of }) => assert_eq!(*of, first.message),
        other => panic!("same Message-ID, same source: {other:?}"),
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 1);

    let other_source = env.record(
        "same Message-ID from another source",
        item("imap:sec@mail.example.org/INBOX", "9:3", relayed),
    );
    assert_ne!(other_source.message, first.message);
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 2);
}

// ---------------------------------------------------------------------------------------------
// Cases.

#[test]
fn reports_get_sequential_case_ids_of_the_current_year() {
    let mut env = Env::new();
    let prefix = env.case_prefix();
    let year = current_year();
    let a = env.record("report 1", item("local", "1.eml", report(1)));
    let b = env.record("report 2", item("local", "2.eml", report(2)));
    assert_eq!(a.verdict.verdict, Kind::Report);
    assert_eq!(a.case.as_deref(), Some(format!("{prefix}-{year}-0001").as_str()));
    assert_eq!(b.case.as_deref(), Some(format!("{prefix}-{year}-0002").as_str()));
    for rec in [&a, &b] {
        let id = rec.case.as_deref().unwrap();
        let case = cases::get(env.store.conn(), id).unwrap().expect("case row");
        assert_eq!(case.state, "reported");
        assert_eq!(case.project.as_deref(), Some("tomcat"));
        assert_eq!(case.reporter, "igor@example.com");
        let events = cases::events(env.store.conn(), id).unwrap();
        let first = events.first().expect("a timeline entry");
        assert_eq!(first.kind, "reported");
        assert_eq!(first.message, Some(rec.message));
        let msgs = cases::messages(env.store.conn(), id).unwrap();
        assert_eq!(msgs.iter().map(|m| m.id).collect::<Vec<_>>(), vec![rec.message]);
        let mut queued = rec.queued.clone();
        queued.sort_by_key(|k| k.as_str());
        assert_eq!(queued, vec![ReplyKind::Ack, ReplyKind::Forward]);
    }
}

#[test]
fn followup_with_case_tag_joins_the_case_and_is_forwarded_without_ack() {
    let mut env = Env::new();
    let report = env.record("report", item("local", "1.eml", report(1)));
    let case = report.case.clone().unwrap();
    let acks = env.count("SELECT COUNT(*) FROM outbox WHERE kind = 'ack'");
    let subject = format!("Subject: Re: [{case}] Received: Tomcat HTTP/2 crash");
    let raw = followup(&[
        "From: Igor Petrenko <igor@example.com>",
        &subject,
        "Message-ID: <followup1@example.com>",
    ]);
    let rec = env.record("follow-up", item("local", "2.eml", raw));
    assert_eq!(rec.verdict.verdict, Kind::Followup);
    assert_eq!(rec.verdict.reason, Some(Reason::CaseTag));
    assert_eq!(rec.case.as_deref(), Some(case.as_str()));
    assert_eq!(rec.queued, vec![ReplyKind::Followup]);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM outbox WHERE kind = 'ack'"),
        acks,
        "no second ack"
    );
    let forwarded: Vec<(String, i64)> = env
        .store
        .conn()
        .prepare("SELECT case_id, message FROM outbox WHERE kind = 'followup'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(forwarded, vec![(case.clone(), rec.message)]);
    assert!(event_kinds(&env.store, &case).contains(&"followup".to_string()));
    let msgs = cases::messages(env.store.conn(), &case).unwrap();
    assert_eq!(msgs.len(), 2, "the follow-up is a message of the case");
}

#[test]
fn reply_to_our_ack_joins_the_case_by_thread() {
    let mut env = Env::new();
    let report = env.record("report", item("local", "1.eml", report(1)));
    let case = report.case.clone().unwrap();
    let ack_id = outbox_id(&env.store, "ack");
    let in_reply_to = format!("In-Reply-To: <{ack_id}>");
    let references = format!("References: <report1@example.com> <{ack_id}>");
    let raw = followup(&[
        "From: Igor Petrenko <igor@example.com>",
        "Subject: Re: your automatic reply",
        "Message-ID: <reply-to-ack@example.com>",
        &in_reply_to,
        &references,
    ]);
    let rec = env.record("reply to the ack", item("local", "2.eml", raw));
    assert_eq!(rec.verdict.verdict, Kind::Followup);
    assert_eq!(rec.verdict.reason, Some(Reason::Thread));
    assert_eq!(rec.case.as_deref(), Some(case.as_str()));
    assert_eq!(rec.queued, vec![ReplyKind::Followup]);
}

#[test]
fn followup_from_the_projects_own_team_is_not_forwarded_back() {
    let mut env = Env::new();
    let report = env.record("report", item("local", "1.eml", report(1)));
    let case = report.case.clone().unwrap();
    assert_eq!(report.verdict.project.as_deref(), Some("tomcat"));
    let team = env.pipeline.config().project("tomcat").unwrap().team.clone();
    let team_addr = team.first().expect("tomcat has a team").to_string();
    let subject = format!("Subject: Re: [{case}] Tomcat HTTP/2 crash");
    let forward_id = outbox_id(&env.store, "forward");
    let in_reply_to = format!("In-Reply-To: <{forward_id}>");

    // The team answers (reply to all comes back to us), once as written in the config and
    // once in other letter case.
    for (n, from) in [
        format!("From: Tomcat Security <{team_addr}>"),
        format!("From: {}", team_addr.to_uppercase()),
    ]
    .iter()
    .enumerate()
    {
        let mid = format!("Message-ID: <team{n}@tomcat.example.org>");
        let raw = followup(&[from, &subject, &mid, &in_reply_to]);
        let rec = env.record("team answer", item("local", &format!("team{n}.eml"), raw));
        assert_eq!(rec.verdict.verdict, Kind::Followup, "{from}");
        assert_eq!(rec.case.as_deref(), Some(case.as_str()), "{from}");
        assert!(rec.queued.is_empty(), "{from}: queued {:?}", rec.queued);
        assert!(rec.withheld.is_empty(), "{from}: withheld {:?}", rec.withheld);
    }
    assert_eq!(env.count("SELECT COUNT(*) FROM outbox WHERE kind = 'followup'"), 0);
    assert_eq!(cases::messages(env.store.conn(), &case).unwrap().len(), 3);

    // Another project's team is not this case's team: its mail is forwarded.
    let raw = followup(&[
        "From: security@httpd.example.org",
        &subject,
        "Message-ID: <other-team@httpd.example.org>",
    ]);
    let rec = env.record("other team", item("local", "other.eml", raw));
    assert_eq!(rec.queued, vec![ReplyKind::Followup]);
}

// ---------------------------------------------------------------------------------------------
// Automatic replies.

#[test]
fn automatic_replies_to_one_address_are_rate_limited() {
    let mut env = Env::new();
    let limit = env.pipeline.config().triage.auto_replies_per_day as usize;
    assert!(limit >= 1, "the demo config allows some automatic replies");
    let n = limit + 3;
    // The last ones write the address in other letter case: still the same mailbox.
    let items: Vec<Item> = (0..n)
        .map(|i| {
            let from = if i + 2 >= n {
                "Flood <FLOOD@Example.NET>"
            } else {
                "Flood <flood@example.net>"
            };
            item(
                "local",
                &format!("q{i}.eml"),
                question_mail(from, &format!("q{i}@example.net"), &[]),
            )
        })
        .collect();
    let (first, second) = items.split_at(n / 2);
    let mut results = env.process(first);
    results.extend(env.process(second));
    let mut replied = 0;
    let mut withheld = 0;
    for (i, r) in results.iter().enumerate() {
        let rec = recorded(&format!("question {i}"), r);
        assert_eq!(rec.verdict.verdict, Kind::RejectOfftopic, "question {i}");
        if rec.queued.contains(&ReplyKind::RejectQuestion) {
            replied += 1;
            assert!(i < limit, "question {i} answered beyond the limit");
        } else {
            withheld += 1;
            assert_eq!(
                rec.withheld.first().map(|w| w.0),
                Some(ReplyKind::RejectQuestion),
                "question {i}: recorded as withheld"
            );
        }
    }
    assert_eq!(replied, limit);
    assert_eq!(withheld, n - limit);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM outbox WHERE auto_reply = 1"),
        limit as i64
    );

    // Someone else still gets an answer.
    let other = env.record(
        "other sender",
        item(
            "local",
            "other.eml",
            question_mail("Other <other@example.net>", "other@example.net", &[]),
        ),
    );
    assert_eq!(other.queued, vec![ReplyKind::RejectQuestion]);
    assert!(other.withheld.is_empty());

    // A real report from the flooding address still opens a case and reaches the team;
    // only the ack is withheld, and the timeline says so.
    let rec = env.record(
        "report over the limit",
        item(
            "local",
            "report.eml",
            report_mail(
                "Flood <flood@example.net>",
                "flood-report@example.net",
                "Tomcat HTTP/2 crash",
                &[],
            ),
        ),
    );
    assert_eq!(rec.verdict.verdict, Kind::Report);
    assert_eq!(rec.queued, vec![ReplyKind::Forward]);
    assert_eq!(rec.withheld.first().map(|w| w.0), Some(ReplyKind::Ack));
    let case = rec.case.unwrap();
    assert!(event_kinds(&env.store, &case).contains(&"rate_limited".to_string()));
}

#[test]
fn reply_to_an_offtopic_answer_opens_a_case_as_appeal() {
    let mut env = Env::new();
    let q = env.record(
        "question",
        item(
            "local",
            "q.eml",
            question_mail("Asker <asker@example.net>", "q1@example.net", &[]),
        ),
    );
    assert_eq!(q.verdict.verdict, Kind::RejectOfftopic);
    assert!(q.case.is_none());
    let answer_id = outbox_id(&env.store, "reject_question");
    let in_reply_to = format!("In-Reply-To: <{answer_id}>");
    let references = format!("References: <q1@example.net> <{answer_id}>");
    // It still reads like a question: the appeal is what makes it a case.
    let raw = mail(
        &[
            "From: Asker <asker@example.net>",
            "To: security@example.org",
            "Subject: Re: Not a security report",
            "Message-ID: <appeal1@example.net>",
            &in_reply_to,
            &references,
            "Content-Type: text/plain; charset=UTF-8",
        ],
        "Hi,\r\n\r\ncould you please have a person look at this again?\r\n\r\nThanks!\r\n",
    );
    let rec = env.record("appeal", item("local", "appeal.eml", raw));
    assert_eq!(rec.verdict.verdict, Kind::Report);
    assert_eq!(rec.verdict.reason, Some(Reason::Appeal));
    let case = rec.case.clone().expect("an appeal opens a case");
    let summary = cases::get(env.store.conn(), &case).unwrap().unwrap();
    assert!(summary.appeal, "the case is marked as opened on appeal");
    assert!(rec.queued.contains(&ReplyKind::Ack));
    assert!(rec.queued.contains(&ReplyKind::Forward));
}

// ---------------------------------------------------------------------------------------------
// Outbox drain.

/// A database from schema version 1 (forwards stored whole, messages in the outbox row)
/// opens, gains `original_at` and `outbox_body`, and its queued rows still go out exactly as
/// they were stored.
#[test]
fn a_version_1_database_is_migrated_and_its_queue_still_sends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&std::fs::read_to_string("src/store/schema.sql").unwrap())
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO outbox (kind, auto_reply, rfc822_id, recipients, body, created_at, next_attempt)
             VALUES ('forward', 0, 'old@example.org', '[\"team@example.org\"]', ?1, 1, 1)",
            [b"Subject: old\r\n\r\nwhole original inside\r\n".as_slice()],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = store.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 3);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM outbox WHERE original_at IS NULL"),
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = 'body'"
        ),
        0,
        "the message left the outbox row"
    );
    assert_eq!(
        send::rendered(store.conn(), 1).unwrap().unwrap(),
        b"Subject: old\r\n\r\nwhole original inside\r\n"
    );
    drop(store);
    // Opening again runs nothing.
    let store = Store::open(&path).unwrap();
    let version: i64 = store.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 3);
}

/// A courier delivers committed rows beside the pipeline, and its results are recorded by the
/// pipeline's next batch (the store keeps one writer); `record_rest` and a drain finish the
/// job. Every row leaves exactly once.
#[test]
fn courier_results_ride_in_the_next_batch() {
    let mut env = Env::new();
    let out_dir = env.dir.path().join("outbox");
    let transport = std::sync::Arc::new(Transport::File(out_dir.clone()));
    let policy = RetryPolicy::from_config(env.pipeline.config());
    let reader = Store::open(&env.db_path()).unwrap();
    let (mut courier, delivering) = send::Courier::start(reader, transport.clone(), policy);
    let rt = runtime();
    let delivering = rt.spawn(delivering);
    let unsent = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

    let first = env
        .pipeline
        .process_batch_with(&mut env.store, &[item("local", "1.eml", report(1))], &mut courier)
        .unwrap();
    let first_rows = recorded("report", first.first().unwrap()).queued.len();
    assert!(first_rows >= 2, "an ack and a forward");
    // Let the courier deliver what is committed, and stop.
    courier.finish();
    rt.block_on(delivering).unwrap().unwrap();
    assert_eq!(
        eml_files(&out_dir).len(),
        first_rows,
        "the courier delivered the first batch"
    );
    assert_eq!(env.count(unsent), first_rows as i64, "but only the pipeline records it");

    let second = env
        .pipeline
        .process_batch_with(&mut env.store, &[item("local", "2.eml", report(2))], &mut courier)
        .unwrap();
    let second_rows = recorded("report", second.first().unwrap()).queued.len();
    assert_eq!(
        env.count(unsent),
        second_rows as i64,
        "the second batch's transaction recorded the first batch's deliveries"
    );
    let first_case = recorded("report", first.first().unwrap()).case.clone().unwrap();
    assert_eq!(state(&env.store, &first_case), CaseState::Forwarded);

    let early = courier.record_rest(&mut env.store).unwrap();
    assert_eq!(early.sent, first_rows);
    let rest = drain(&mut env, &transport);
    assert_eq!(rest.sent, second_rows, "the drain sends only what the courier did not");
    assert_eq!(env.count(unsent), 0);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM outbox WHERE attempts = 1"),
        (first_rows + second_rows) as i64,
        "each row was sent once"
    );
    assert_eq!(eml_files(&out_dir).len(), first_rows + second_rows);
}

#[test]
fn file_transport_drain_writes_each_row_once_and_forwards_the_case() {
    let mut env = Env::new();
    let rec = env.record("report", item("local", "1.eml", report(1)));
    let case = rec.case.clone().unwrap();
    let rows = env.count("SELECT COUNT(*) FROM outbox") as usize;
    assert_eq!(rows, rec.queued.len());
    let out_dir = env.dir.path().join("outbox");
    let transport = Transport::File(out_dir.clone());

    let stats = drain(&mut env, &transport);
    assert_eq!(
        stats,
        DrainStats {
            sent: rows,
            deferred: 0,
            failed: 0
        }
    );
    let files = eml_files(&out_dir);
    assert_eq!(files.len(), rows, "one .eml per row: {:?}", all_files(&out_dir));
    assert_eq!(all_files(&out_dir).len(), rows, "no temporary files are left behind");
    let ids: Vec<i64> = env
        .store
        .conn()
        .prepare("SELECT id FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut expected: Vec<Vec<u8>> = ids
        .iter()
        .map(|&id| secintake::send::rendered(env.store.conn(), id).unwrap().expect("a row"))
        .collect();
    let mut written: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected, "each file holds one row's message");
    // The forward's row keeps only an offset; the file has the original back, CRLF, whole.
    let forward = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with("-forward.eml"))
        .expect("a forward file");
    let forward = std::fs::read(forward).unwrap();
    let original = secintake::reply::crlf(&report(1));
    assert!(
        forward.windows(original.len()).any(|w| w == original.as_slice()),
        "the forward carries the original unchanged"
    );
    let stored: i64 =
        env.count("SELECT MAX(length(b.body)) FROM outbox o JOIN outbox_body b USING (id) WHERE kind = 'forward'");
    assert!(
        (stored as usize) < forward.len() - original.len() / 2,
        "the outbox row does not hold a second copy of the original ({stored} of {} bytes)",
        forward.len()
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL AND attempts = 1"),
        rows as i64
    );
    assert_eq!(state(&env.store, &case), CaseState::Forwarded);
    let events = cases::events(env.store.conn(), &case).unwrap();
    let moved = events.iter().find(|e| e.kind == "state").expect("a state event");
    assert!(moved.detail.contains("reported -> forwarded"), "{:?}", moved.detail);
    let sent_at: Vec<i64> = env
        .store
        .conn()
        .prepare("SELECT sent_at FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    // Again: nothing is due, nothing is written.
    let stats = drain(&mut env, &transport);
    assert_eq!(stats, DrainStats::default());
    assert_eq!(eml_files(&out_dir).len(), rows);
    let events_after = cases::events(env.store.conn(), &case).unwrap();
    assert_eq!(events_after.len(), events.len(), "no second state event");
    // Even with the files gone, sent rows are not sent again.
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    let stats = drain(&mut env, &transport);
    assert_eq!(stats, DrainStats::default());
    assert!(eml_files(&out_dir).is_empty(), "a sent row was written again");
    let sent_at_after: Vec<i64> = env
        .store
        .conn()
        .prepare("SELECT sent_at FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sent_at_after, sent_at);
}

#[test]
fn file_transport_into_an_unwritable_path_defers_every_row() {
    let mut env = Env::new();
    let rec = env.record("report", item("local", "1.eml", report(1)));
    let case = rec.case.clone().unwrap();
    let rows = env.count("SELECT COUNT(*) FROM outbox") as usize;
    assert!(rows >= 1);
    let blocker = env.dir.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let transport = Transport::File(blocker.join("outbox"));
    let before = store::now();

    let stats = drain(&mut env, &transport);
    assert_eq!(
        stats,
        DrainStats {
            sent: 0,
            deferred: rows,
            failed: 0
        }
    );
    let got: Vec<RetryRow> = env
        .store
        .conn()
        .prepare("SELECT attempts, next_attempt, last_error, sent_at, failed_at FROM outbox")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), rows);
    for (attempts, next_attempt, last_error, sent_at, failed_at) in got {
        assert_eq!(attempts, 1);
        assert!(next_attempt > before, "next attempt {next_attempt} not after {before}");
        assert!(!last_error.is_empty(), "the error is recorded");
        assert_eq!(sent_at, None);
        assert_eq!(failed_at, None);
    }
    assert_eq!(state(&env.store, &case), CaseState::Reported);
    assert!(!event_kinds(&env.store, &case).contains(&"state".to_string()));
    // Nothing is due before the next attempt: a second drain does nothing.
    assert_eq!(drain(&mut env, &transport), DrainStats::default());
    assert_eq!(env.count("SELECT COUNT(*) FROM outbox WHERE attempts = 1"), rows as i64);
}

/// A round of the outbox holds its rows' messages in memory at once, so it stops where they
/// reach its byte limit: a burst of large reports must not be loaded whole. The first row
/// goes whatever its size.
#[test]
fn outbox_rounds_stop_at_their_byte_limit() {
    let mut env = Env::new();
    for n in 0..6 {
        // ~100 KB reports, from a sender each (so that each gets its ack): an ack of ~1 KB
        // and a forward that carries the original.
        let mut raw = report_mail(
            &format!("Reporter {n} <reporter{n}@example.com>"),
            &format!("big{n}@example.com"),
            "Tomcat HTTP/2: NullPointerException crash lets any client stop the connector",
            &[],
        );
        for line in 0..1500 {
            raw.extend_from_slice(format!("request {line}: GET /examples/index.jsp HTTP/1.1 -> 200\r\n").as_bytes());
        }
        let rec = env.record("large report", item("local", &format!("{n}.eml"), raw));
        assert_eq!(rec.verdict.verdict, Kind::Report);
    }
    let rows = env.count("SELECT COUNT(*) FROM outbox") as usize;
    assert_eq!(rows, 12);
    let now = store::now() + 1;
    let size = |d: &outbox::Due| d.message.body.len() + d.message.original.as_ref().map_or(0, Vec::len);
    for bytes in [1, 50_000, 250_000, 10_000_000] {
        let limit = outbox::RoundLimit { count: 100, bytes };
        for (what, round) in [
            ("due", outbox::due(env.store.conn(), now, limit).unwrap()),
            ("due_after", outbox::due_after(env.store.conn(), now, 0, limit).unwrap()),
        ] {
            let sizes: Vec<usize> = round.iter().map(size).collect();
            let before_last: usize = sizes.iter().rev().skip(1).sum();
            assert!(
                !sizes.is_empty(),
                "{what} {bytes}: the first row goes whatever its size"
            );
            assert!(before_last < bytes, "{what} {bytes}: {sizes:?}");
            assert!(
                sizes.len() == rows || sizes.iter().sum::<usize>() >= bytes,
                "{what} {bytes}: stopped early: {sizes:?}"
            );
            let ids: Vec<i64> = round.iter().map(|d| d.id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{what}: in order: {ids:?}");
        }
    }
    let one = outbox::due(env.store.conn(), now, outbox::RoundLimit { count: 100, bytes: 1 }).unwrap();
    assert_eq!(one.len(), 1);
    let some = outbox::due(
        env.store.conn(),
        now,
        outbox::RoundLimit {
            count: 100,
            bytes: 250_000,
        },
    )
    .unwrap();
    assert!(some.len() > 2 && some.len() < rows, "{}", some.len());
    let counted = outbox::due(
        env.store.conn(),
        now,
        outbox::RoundLimit {
            count: 3,
            bytes: usize::MAX >> 1,
        },
    )
    .unwrap();
    assert_eq!(counted.len(), 3, "the count still limits");
    // All of it goes, round after round.
    let transport = Transport::File(env.dir.path().join("outbox"));
    assert_eq!(drain(&mut env, &transport).sent, rows);
}

// ---------------------------------------------------------------------------------------------
// Crash safety.

/// Rows in `[messages, cases, case_events, outbox]`.
fn table_counts(conn: &rusqlite::Connection) -> [i64; 4] {
    ["messages", "cases", "case_events", "outbox"].map(|t| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    })
}

#[test]
fn a_batch_dropped_without_commit_leaves_nothing_and_the_rerun_commits_once() {
    let mut env = Env::new();
    let items = vec![
        item("local", "1.eml", report(1)),
        item(
            "local",
            "2.eml",
            question_mail("Asker <asker@example.net>", "q1@example.net", &[]),
        ),
    ];
    let year = current_year();
    let prefix = env.case_prefix();
    {
        let tx = env.store.batch().unwrap();
        let first = items.first().unwrap();
        // In the pipeline's order: the case, then the message that opens it.
        let case = cases::create(
            &tx,
            &cases::NewCase {
                prefix: &prefix,
                year,
                project: Some("tomcat"),
                reporter: "igor@example.com",
                subject: "Tomcat HTTP/2 crash",
                appeal: false,
                signals: "[]",
                at: store::now(),
            },
        )
        .unwrap();
        let message = store::insert_message(
            &tx,
            &store::NewMessage {
                sha256: "0000000000000000000000000000000000000000000000000000000000000001",
                message_id: Some("report1@example.com"),
                source: &first.source,
                source_ref: &first.source_ref,
                received_at: store::now(),
                raw: &first.raw,
                verdict: "report",
                reason: None,
                project: Some("tomcat"),
                case_id: Some(&case),
                from_addr: "igor@example.com",
                subject: "Tomcat HTTP/2 crash",
                date: None,
                signals: "[]",
            },
        )
        .unwrap();
        cases::event(&tx, &case, store::now(), "reported", "", Some(message)).unwrap();
        outbox::enqueue(
            &tx,
            &outbox::NewOutgoing {
                kind: "forward",
                auto_reply: false,
                case_id: Some(&case),
                message: Some(message),
                rfc822_id: "crash@example.org",
                envelope_from: "security@example.org",
                recipients: &["security@tomcat.example.org".to_string()],
                rate_key: "",
                body: b"Subject: x\r\n\r\nx\r\n",
                original_at: None,
                at: store::now(),
            },
        )
        .unwrap();
        assert_eq!(table_counts(&tx), [1, 1, 1, 1]);
        // The process dies here: the transaction is dropped, never committed.
    }
    assert_eq!(table_counts(env.store.conn()), [0, 0, 0, 0]);
    let db = env.db_path();
    drop(env.store);
    env.store = Store::open(&db).unwrap();
    assert_eq!(table_counts(env.store.conn()), [0, 0, 0, 0], "after reopening");

    let results = env.process(&items);
    let recs: Vec<_> = results
        .iter()
        .enumerate()
        .map(|(i, r)| recorded(&format!("item {i}"), r).clone())
        .collect();
    let case = recs.first().unwrap().case.clone().unwrap();
    assert_eq!(case, format!("{prefix}-{year}-0001"), "the lost batch used no id");
    let queued: usize = recs.iter().map(|r| r.queued.len()).sum();
    let committed = table_counts(env.store.conn());
    assert_eq!(committed[0], 2);
    assert_eq!(committed[1], 1);
    assert_eq!(committed[3], queued as i64);

    // Re-reading the source (the crash came after the commit this time) changes nothing.
    let again = env.process(&items);
    assert!(
        again.iter().all(|r| matches!(r, Ok(Outcome::Duplicate { .. }))),
        "{again:?}"
    );
    drop(env.store);
    env.store = Store::open(&db).unwrap();
    assert_eq!(table_counts(env.store.conn()), committed, "after reopening");
}

/// With a checkpointer, the writer's commits only append to the write-ahead log (its own
/// checkpoints are off), and the checkpointer's thread copies them into the database file.
#[test]
fn a_checkpointer_moves_committed_pages_into_the_database_file() {
    let mut env = Env::new();
    let db = env.db_path();
    let checkpoints = env.store.checkpoint_in_background().expect("a checkpointer starts");
    let auto: i64 = env
        .store
        .conn()
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto, 0, "the writer no longer checkpoints");
    let before = std::fs::metadata(&db).unwrap().len();
    let items: Vec<Item> = (0..40).map(|i| item("local", &format!("{i}.eml"), report(i))).collect();
    env.process(&items);
    // Far fewer pages than SQLite's own 1,000-page checkpoint: only the thread moves them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&db).unwrap().len() <= before {
        assert!(std::time::Instant::now() < deadline, "nothing was checkpointed");
        std::thread::sleep(store::Checkpointer::EVERY);
    }
    drop(checkpoints);
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 40);
}

/// Makes the store refuse inserts into `table` where `when` holds, as a full disk or a bug
/// would (until `DROP TRIGGER poison`).
fn poison(store: &Store, table: &str, when: &str) {
    store
        .conn()
        .execute_batch(&format!(
            "CREATE TEMP TRIGGER poison BEFORE INSERT ON {table} WHEN {when}
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;"
        ))
        .unwrap();
}

#[test]
fn a_message_that_fails_rolls_back_alone() {
    let mut env = Env::new();
    // Make the store refuse one message's case, as a full disk or a bug would.
    poison(&env.store, "cases", "NEW.subject LIKE '%POISON%'");
    let poison = report_mail(
        "Igor Petrenko <igor@example.com>",
        "poison@example.com",
        "Tomcat POISON crash",
        &[],
    );
    let items = [
        item("local", "1.eml", report(1)),
        item("local", "poison.eml", poison.clone()),
        item(
            "local",
            "3.eml",
            question_mail("Asker <asker@example.net>", "q1@example.net", &[]),
        ),
    ];
    let results = env.process(&items);
    let a = recorded("before the poison", results.first().unwrap()).clone();
    assert!(results.get(1).unwrap().is_err(), "the poisoned message fails");
    let c = recorded("after the poison", results.get(2).unwrap()).clone();
    assert_eq!(
        table_counts(env.store.conn())[0],
        2,
        "the failed message's row is rolled back, the others are kept"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM messages WHERE message_id = 'poison@example.com'"),
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM outbox"),
        (a.queued.len() + c.queued.len()) as i64
    );
    // Once the store is healthy again, the same message goes through: it was never stored.
    env.store.conn().execute_batch("DROP TRIGGER poison").unwrap();
    let rec = env.record("poison retried", item("local", "poison.eml", poison));
    assert_eq!(rec.verdict.verdict, Kind::Report);
    assert!(rec.case.is_some());
}

/// The same through `ingest`, where a batch is recorded as its messages arrive, and with the
/// failure late, after the message's case and row are written: the failing message leaves
/// nothing behind, the messages before it are recorded once (not twice), those after it too,
/// and each is reported with its own result.
#[test]
fn a_message_that_fails_mid_stream_rolls_back_alone() {
    let mut env = Env::new();
    poison(&env.store, "outbox", "NEW.recipients LIKE '%mallory@%'");
    let poison = report_mail(
        "Mallory <mallory@example.com>",
        "poison@example.com",
        "Tomcat crash",
        &[],
    );
    let names = ["1.eml", "2.eml", "poison.eml", "4.eml", "5.eml"];
    let items: Vec<Result<Item, std::convert::Infallible>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let raw = if *name == "poison.eml" {
                poison.clone()
            } else {
                report(i as u32 + 1)
            };
            Ok(item("local", name, raw))
        })
        .collect();
    let mut outcomes = Vec::new();
    secintake::ingest(&env.pipeline, &mut env.store, items, |r| {
        let (item, outcome) = r.unwrap();
        outcomes.push((item.source_ref.clone(), outcome.is_ok()));
    })
    .unwrap();
    let expected: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), *n != "poison.eml")).collect();
    assert_eq!(outcomes, expected);
    assert_eq!(env.count("SELECT COUNT(*) FROM messages"), 4, "each good message once");
    assert_eq!(env.count("SELECT COUNT(*) FROM cases"), 4);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM messages WHERE message_id = 'poison@example.com'"),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Local sources.

fn simple(from: &str, id: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: security@example.org\nSubject: {subject}\nMessage-ID: <{id}>\n\
         Date: Thu, 19 Mar 2026 10:00:00 +0000\nContent-Type: text/plain\n\n{body}"
    )
}

/// A long ingest commits in batches of `BATCH_MESSAGES`, the rider rides once per batch, and
/// every message is reported only once its batch has committed (seen from a second
/// connection), in source order.
#[test]
fn ingest_reports_each_message_after_its_batch_commits() {
    struct Count(std::sync::Arc<std::sync::Mutex<(usize, usize)>>);
    impl secintake::pipeline::Rider for Count {
        fn ride(&mut self, _: &rusqlite::Connection) -> Result<(), StoreError> {
            self.0.lock().unwrap().0 += 1;
            Ok(())
        }
        fn committed(&mut self) {
            self.0.lock().unwrap().1 += 1;
        }
    }
    let mut env = Env::new();
    let n = 2 * secintake::BATCH_MESSAGES + 7;
    let items: Vec<Result<Item, std::convert::Infallible>> = (0..n)
        .map(|i| {
            let raw = simple(
                "r@example.net",
                &format!("m{i}@example.net"),
                "Tomcat question",
                "How do I?",
            );
            Ok(item("local", &format!("{i}.eml"), raw.into_bytes()))
        })
        .collect();
    let reader = rusqlite::Connection::open(env.db_path()).unwrap();
    let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
    let mut rider = Count(counts.clone());
    let mut reported = Vec::new();
    let log = &mut reported;
    secintake::ingest_with(
        &env.pipeline,
        &mut env.store,
        items,
        move |r| {
            let (item, outcome) = r.unwrap();
            let rec = recorded(&item.source_ref, outcome);
            let visible: i64 = reader
                .query_row("SELECT COUNT(*) FROM messages WHERE id = ?1", [rec.message], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(visible, 1, "{} reported before its batch committed", item.source_ref);
            log.push(item.source_ref.clone());
        },
        &mut rider,
    )
    .unwrap();
    assert_eq!(
        *counts.lock().unwrap(),
        (3, 3),
        "three batches, one ride and one commit each"
    );
    let expected: Vec<String> = (0..n).map(|i| format!("{i}.eml")).collect();
    assert_eq!(reported, expected);
}

#[test]
fn ingest_reads_maildirs_eml_folders_and_mbox_files_in_order() {
    let mut env = Env::new();
    let root = env.dir.path().join("sources");
    let maildir = root.join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).unwrap();
        path
    };
    let body = common::REPORT_BODY.replace("\r\n", "\n");
    let mut expected: Vec<(&str, Option<PathBuf>)> = Vec::new();
    // Maildir: new/ first, then cur/, each by name.
    let p = write(
        maildir.join("new/1700000002.M2.host"),
        &simple("a@example.com", "new-b@example.com", "Tomcat crash", &body),
    );
    let p0 = write(
        maildir.join("new/1700000001.M1.host"),
        &simple("a@example.com", "new-a@example.com", "Tomcat crash", &body),
    );
    expected.push(("new-a@example.com", Some(p0)));
    expected.push(("new-b@example.com", Some(p)));
    let p = write(
        maildir.join("cur/1600000000.M0.host:2,S"),
        &simple("c@example.com", "cur-a@example.com", "Tomcat crash", &body),
    );
    expected.push(("cur-a@example.com", Some(p)));
    // A folder of .eml files; anything else in it is skipped.
    let emls = root.join("emls");
    std::fs::create_dir_all(&emls).unwrap();
    let p2 = write(
        emls.join("02.eml"),
        &simple("e@example.com", "eml-2@example.com", "Tomcat crash", &body),
    );
    let p1 = write(
        emls.join("01.eml"),
        &simple("e@example.com", "eml-1@example.com", "Tomcat crash", &body),
    );
    write(
        emls.join("notes.txt"),
        &simple("x@example.com", "not-mail@example.com", "notes", &body),
    );
    expected.push(("eml-1@example.com", Some(p1)));
    expected.push(("eml-2@example.com", Some(p2)));
    // An mbox with three messages; the second has a `>From ` line in its body.
    let mbox_path = root.join("archive.mbox");
    let mbox = format!(
        "From a@example.com Thu Mar 19 10:00:00 2026\n{}\n\
         From b@example.com Thu Mar 19 10:05:00 2026\n{}\n\
         From c@example.com Thu Mar 19 10:10:00 2026\n{}\n",
        simple("a@example.com", "mbox-1@example.com", "Tomcat crash", &body),
        simple(
            "b@example.com",
            "mbox-2@example.com",
            "Tomcat crash",
            &format!("{body}\n>From the logs the crash starts right after the frame.\nmore text\n"),
        ),
        simple("c@example.com", "mbox-3@example.com", "Tomcat crash", &body),
    );
    write(mbox_path.clone(), &mbox);
    for id in ["mbox-1@example.com", "mbox-2@example.com", "mbox-3@example.com"] {
        expected.push((id, None));
    }
    let missing = root.join("does-not-exist");

    let paths = vec![maildir, missing.clone(), emls, mbox_path.clone()];
    let mut ok: Vec<(String, i64, bool)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    secintake::ingest(&env.pipeline, &mut env.store, LocalSource::new(&paths), |r| match r {
        Ok((item, outcome)) => {
            let rec = recorded(&item.source_ref, outcome);
            ok.push((item.source_ref.clone(), rec.message, true));
        }
        Err(e) => errors.push(e.path.clone()),
    })
    .expect("ingest");

    assert_eq!(errors, vec![missing.display().to_string()]);
    assert_eq!(ok.len(), expected.len(), "{ok:?}");
    let stored: Vec<(i64, Option<String>, String)> = env
        .store
        .conn()
        .prepare("SELECT id, message_id, source_ref FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|s| s.1.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        expected.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
        "messages are recorded in source order"
    );
    for ((source_ref, message, _), ((_, path), (id, _, stored_ref))) in
        ok.iter().zip(expected.iter().zip(stored.iter()))
    {
        assert_eq!(message, id, "reported in the order recorded");
        assert_eq!(source_ref, stored_ref);
        match path {
            Some(p) => assert_eq!(source_ref, &p.display().to_string()),
            None => assert!(source_ref.starts_with(&mbox_path.display().to_string()), "{source_ref}"),
        }
    }
    // mboxrd quoting is undone: the reporter's line is back as written.
    let raw: Vec<u8> = env
        .store
        .conn()
        .query_row(
            "SELECT raw FROM messages WHERE message_id = 'mbox-2@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains("\nFrom the logs the crash starts"), "{raw}");
    assert!(!raw.contains(">From the logs"), "{raw}");
    assert!(raw.contains("more text"), "the body goes on after the quoted line");
}

// ---------------------------------------------------------------------------------------------
// Case state machine.

#[test]
fn case_states_move_only_along_allowed_transitions() {
    let mut env = Env::new();
    let rec = env.record("report", item("local", "1.eml", report(1)));
    let case = rec.case.clone().unwrap();
    let conn = env.store.conn();
    let events = |c: &str| cases::events(conn, c).unwrap().len();

    let refuse = |from: CaseState, to: CaseState| {
        let before = events(&case);
        let r = cases::set_state(conn, &case, to, "should not happen", store::now());
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{from:?} -> {to:?}: {r:?}");
        assert_eq!(state(&env.store, &case), from, "{from:?} -> {to:?} changed the state");
        assert_eq!(events(&case), before, "{from:?} -> {to:?} added an event");
    };
    let allow = |from: CaseState, to: CaseState| {
        let before = events(&case);
        let r = cases::set_state(conn, &case, to, "by the team", store::now());
        assert_eq!(r.unwrap(), from, "{from:?} -> {to:?} returns the old state");
        assert_eq!(state(&env.store, &case), to);
        let all = cases::events(conn, &case).unwrap();
        assert_eq!(all.len(), before + 1, "{from:?} -> {to:?}: one event");
        let last = all.last().unwrap();
        assert_eq!(last.kind, "state");
        assert!(
            last.detail.contains(&format!("{} -> {}", from.as_str(), to.as_str()))
                && last.detail.contains("by the team"),
            "{:?}",
            last.detail
        );
    };

    use CaseState::*;
    refuse(Reported, Announced);
    refuse(Reported, Reported);
    refuse(Reported, Fixed);
    allow(Reported, Forwarded);
    refuse(Forwarded, Reported);
    refuse(Forwarded, Cve);
    allow(Forwarded, Rejected);
    allow(Rejected, Accepted);
    refuse(Accepted, Announced);
    allow(Accepted, Cve);
    refuse(Cve, Accepted);
    allow(Cve, Fixed);
    refuse(Fixed, Announced);
    allow(Fixed, Released);
    allow(Released, Announced);
    for to in CaseState::ALL {
        refuse(Announced, to);
    }

    let r = cases::set_state(conn, "SEC-1999-9999", Accepted, "", store::now());
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

/// `secintake once` on a local Maildir (the server-less mode of the daemon): new messages are
/// recorded, moved to `cur/` with the seen flag only after the commit, and answered as files;
/// a second pass finds nothing new.
#[test]
fn once_over_a_maildir_records_marks_and_answers() {
    let dir = TempDir::new().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(maildir.join("new/1700000000.1.host"), report(1)).unwrap();
    std::fs::write(maildir.join("new/1700000000.2.host"), report(2)).unwrap();
    let demo = std::fs::read_to_string(common::root().join("config/demo.toml")).unwrap();
    let config = demo
        .replace("../target/demo/Maildir", &maildir.display().to_string())
        .replace(
            "../target/demo/outbox",
            &dir.path().join("outbox").display().to_string(),
        )
        .replace(
            "../target/demo/secintake.db",
            &dir.path().join("db.sqlite").display().to_string(),
        );
    let cfg = dir.path().join("secintake.toml");
    std::fs::write(&cfg, config).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_secintake"))
            .arg("--config")
            .arg(&cfg)
            .arg("once")
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 recorded") && text.contains("4 sent"), "{text}");
    assert!(eml_files(&maildir.join("new")).is_empty() && all_files(&maildir.join("new")).is_empty());
    let cur = all_files(&maildir.join("cur"));
    assert_eq!(cur.len(), 2);
    assert!(cur.iter().all(|n| n.ends_with(":2,S")), "{cur:?}");
    assert_eq!(
        all_files(&dir.path().join("outbox")).len(),
        4,
        "two acks and two forwards"
    );
    let again = run();
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success() && text.contains("0 recorded") && text.contains("0 sent"),
        "{text}"
    );
}
