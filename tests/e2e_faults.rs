//! Faults through real servers: the IMAP server goes away mid-run, the SMTP server is down,
//! the MTA refuses a recipient for good, and the daemon is reloaded with a bad config.
//!
//! These tests stop and start the servers of this test binary, so they take a lock and run
//! one at a time (the other end-to-end tests, in e2e.rs, have their own servers).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::servers::{Setup, contains, header, servers};

const BOUND: Duration = Duration::from_secs(60);
static SERIAL: Mutex<()> = Mutex::new(());

/// The daemon under test; killed if a failing test unwinds past it.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn daemon(t: &Setup) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_secintake"))
        .arg("--config")
        .arg(&t.config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.dir.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon(Some(child))
}

fn signal(d: &Daemon, sig: &str) {
    let child = d.0.as_ref().expect("daemon running");
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn stop(mut d: Daemon) {
    signal(&d, "TERM");
    let status = d.0.take().expect("daemon running").wait().unwrap();
    assert!(status.success(), "daemon exit: {status:?}");
}

fn wait_until(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < bound {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

#[test]
fn imap_outage_mid_run_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Setup::new("imapdown", "batch_size = 10", "");
    let s = servers();
    // A backlog big enough that the outage lands while it is being drained.
    for n in 0..60 {
        s.append(&t.security, &t.report(n));
    }
    let d = daemon(&t);
    assert!(
        wait_until(BOUND, || t.count("SELECT COUNT(*) FROM messages") > 0),
        "daemon started processing"
    );
    s.control("stop-imap");
    std::thread::sleep(Duration::from_secs(2));
    s.control("start-imap");
    for n in 60..80 {
        s.append(&t.security, &t.report(n));
    }
    // Dovecot is also the MTA's LMTP server: a delivery cut by the outage is retried by Postfix,
    // later, and may land twice (the MTA's at-least-once, same Message-ID). So "each ack
    // exactly once" is checked on our side (one ack row per report, each sent) and by distinct
    // Message-ID in the mailbox, which also shows that none was lost.
    let distinct_acks = || {
        s.inbox(&t.reporter)
            .iter()
            .filter_map(|m| header(m, "Message-ID"))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let all = wait_until(2 * BOUND, || {
        t.count("SELECT COUNT(*) FROM cases") >= 80 && distinct_acks() >= 80
    });
    // Every message ends up marked done on the server, including any batch that was recorded
    // but not yet marked when the connection dropped (read again as a duplicate, and marked).
    let unmarked = || {
        s.messages_in(&t.security, "INBOX")
            .into_iter()
            .map(|(raw, flags)| (header(&raw, "Message-ID"), flags.join(" ")))
            .filter(|(_, f)| !(f.contains("Seen") && f.contains("$Secintake")))
            .collect::<Vec<_>>()
    };
    let all_marked = wait_until(BOUND, || unmarked().is_empty());
    stop(d);
    let log = std::fs::read_to_string(t.dir.path().join("daemon.log")).unwrap();
    assert!(
        all,
        "backlog finished after the outage: {} cases, {} acks sent, {} distinct acks in the mailbox; log:\n{log}",
        t.count("SELECT COUNT(*) FROM cases"),
        t.count("SELECT COUNT(*) FROM outbox WHERE kind = 'ack' AND sent_at IS NOT NULL"),
        distinct_acks()
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM cases"), 80, "one case per report");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM messages"),
        80,
        "each message recorded once"
    );
    assert_eq!(
        t.count("SELECT COUNT(*) FROM outbox WHERE kind = 'ack'"),
        80,
        "one ack queued per report"
    );
    assert_eq!(
        t.count("SELECT COUNT(*) FROM outbox WHERE kind = 'ack' AND sent_at IS NOT NULL"),
        80,
        "each ack sent (a 4xx while Dovecot, the MTA's auth and LMTP backend, is down is retried)"
    );
    assert_eq!(distinct_acks(), 80, "each reporter acknowledged, none twice by us");
    assert!(
        all_marked,
        "left unmarked after the outage: {:?}",
        unmarked().iter().map(|(_, f)| f).collect::<Vec<_>>()
    );
    assert!(log.contains("reconnecting"), "the outage was noticed and logged");
    assert_eq!(
        log.matches("IMAP session ended").count(),
        1,
        "logged once, not per attempt:\n{log}"
    );
}

#[test]
fn smtp_outage_keeps_mail_until_delivered_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Setup::new("smtpdown", "", "");
    let s = servers();
    for n in 0..3 {
        s.append(&t.security, &t.report(n));
    }
    s.control("stop-smtp");
    let (ok, out) = t.cli(&["once"]);
    s.control("start-smtp");
    assert!(!ok, "a pass that could not deliver says so in its exit code: {out}");
    assert!(
        out.contains("3 recorded") && out.contains("0 sent, 6 deferred"),
        "{out}"
    );
    assert_eq!(
        t.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND attempts = 1 AND last_error != ''"),
        6
    );

    // Retries are due after retry_base (1 s in the test config).
    std::thread::sleep(Duration::from_millis(2500));
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert!(out.contains("6 sent"), "{out}");
    let (ok, out) = t.cli(&["once"]);
    assert!(ok && out.contains("0 sent"), "nothing sent twice: {out}");
    assert_eq!(s.wait_inbox(&t.reporter, 3, BOUND).len(), 3);
    assert_eq!(s.wait_inbox(&t.team, 3, BOUND).len(), 3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.inbox(&t.reporter).len(), 3, "exactly once");
    assert_eq!(s.inbox(&t.team).len(), 3, "exactly once");
}

#[test]
fn permanent_refusal_stops_and_lands_on_the_case_timeline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Setup::new("refused", "", "");
    // The team lives outside the test MTA's domains: Postfix refuses it with a 5xx.
    let text = std::fs::read_to_string(&t.config)
        .unwrap()
        .replace(&t.team, "team@elsewhere.test");
    std::fs::write(&t.config, text).unwrap();
    let s = servers();
    s.append(&t.security, &t.report(1));
    let (ok, out) = t.cli(&["once"]);
    assert!(!ok, "{out}");
    assert!(out.contains("1 sent") && out.contains("1 failed"), "{out}");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM outbox WHERE kind = 'forward' AND failed_at IS NOT NULL"),
        1
    );
    assert_eq!(
        t.count("SELECT COUNT(*) FROM case_events WHERE kind = 'delivery_failed'"),
        1
    );
    let (_, out) = t.cli(&["once"]);
    assert!(
        out.contains("0 sent, 0 deferred, 0 failed"),
        "a permanent failure is not retried: {out}"
    );
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Setup::new("reload", "", "");
    let s = servers();
    let d = daemon(&t);
    std::thread::sleep(Duration::from_secs(1));

    // A broken config: the daemon must say so and keep running on the old one.
    let good = std::fs::read_to_string(&t.config).unwrap();
    std::fs::write(&t.config, good.replace("[triage]", "[triage]\nbogus_key = 1")).unwrap();
    signal(&d, "HUP");
    std::thread::sleep(Duration::from_secs(1));
    s.submit(Some(&t.reporter), &t.security, &t.report(1));
    assert_eq!(
        s.wait_inbox(&t.reporter, 1, BOUND).len(),
        1,
        "still serving after a bad reload"
    );

    // A good new config (another case prefix) is picked up.
    std::fs::write(&t.config, good.replace("[triage]", "[triage]\ncase_prefix = \"RLD\"")).unwrap();
    signal(&d, "HUP");
    std::thread::sleep(Duration::from_secs(2));
    s.submit(Some(&t.reporter), &t.security, &t.report(2));
    let acks = s.wait_inbox(&t.reporter, 2, BOUND);
    stop(d);
    let log = std::fs::read_to_string(t.dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("reload refused") && log.contains("bogus_key"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().any(|a| contains(a, "[RLD-")), "the new prefix is in use");
    assert!(!log.contains(&s.password), "no secret in the log");
}
