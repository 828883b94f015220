//! End to end through real servers: mail submitted to a private Postfix, delivered by LMTP
//! into a private Dovecot, read by `secintake once` / `secintake run` over IMAP, answered
//! through Postfix, and read back over IMAP from the recipients' mailboxes.
//!
//! Every test has its own addresses (`sec-TAG@…`, `reporter-TAG@…`), so they share one server
//! pair per test binary. Tests that stop a server live in `e2e_faults.rs`.

mod common;

use std::time::Duration;

use common::servers::{Setup, contains, header, report_from, servers};

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn report_is_acknowledged_forwarded_recorded_and_marked_done() {
    let t = Setup::new("report", "", "");
    let s = servers();
    s.submit(Some(&t.reporter), &t.security, &t.report(1));
    assert_eq!(
        s.wait_inbox(&t.security, 1, BOUND).len(),
        1,
        "Postfix delivered the report"
    );

    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "once failed: {out}");

    let acks = s.wait_inbox(&t.reporter, 1, BOUND);
    assert_eq!(acks.len(), 1, "one acknowledgement");
    let ack = &acks[0];
    let case: String = t.db().query_row("SELECT id FROM cases", [], |r| r.get(0)).unwrap();
    assert!(
        header(ack, "Subject").unwrap().contains(&format!("[{case}]")),
        "ack subject carries the tag"
    );
    assert_eq!(header(ack, "Auto-Submitted").as_deref(), Some("auto-replied"));
    assert_eq!(
        header(ack, "In-Reply-To").as_deref(),
        Some("<report-report-1@example.com>")
    );
    assert!(
        contains(ack, "Return-Path: <>"),
        "ack sent with the null envelope sender"
    );
    assert!(
        !contains(ack, "unauthenticated attacker"),
        "ack never quotes the report"
    );

    let fwd = s.wait_inbox(&t.team, 1, BOUND);
    assert_eq!(fwd.len(), 1, "one forward to the Tomcat team");
    assert!(header(&fwd[0], "Subject").unwrap().contains(&format!("[{case}]")));
    assert!(contains(&fwd[0], "Content-Type: message/rfc822"), "original attached");
    assert!(
        contains(&fwd[0], "Message-ID: <report-report-1@example.com>"),
        "the attachment is the original"
    );
    let reply_to = header(&fwd[0], "Reply-To").unwrap();
    assert!(
        reply_to.contains(&t.reporter) && reply_to.contains(&t.security),
        "Reply-To: {reply_to}"
    );
    assert!(s.inbox(&t.triage).is_empty(), "routed to the project, not triage");

    assert_eq!(
        t.count("SELECT COUNT(*) FROM cases WHERE project = 'tomcat' AND state = 'forwarded'"),
        1
    );
    let flags = &s.messages_in(&t.security, "INBOX")[0].1;
    let flags = flags.join(" ");
    assert!(
        flags.contains("Seen") && flags.contains("$Secintake"),
        "marked done on the server: {flags}"
    );
}

#[test]
fn html_only_mail_gets_the_format_reply_and_no_case() {
    let t = Setup::new("html", "", "");
    let s = servers();
    let raw = format!(
        "From: {r}\r\nTo: {sec}\r\nSubject: vuln\r\nMessage-ID: <html-1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>An attacker can <b>bypass</b> auth in Tomcat.</p></body></html>\r\n",
        r = t.reporter,
        sec = t.security
    );
    s.submit(Some(&t.reporter), &t.security, raw.as_bytes());
    s.wait_inbox(&t.security, 1, BOUND);
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    let replies = s.wait_inbox(&t.reporter, 1, BOUND);
    assert_eq!(replies.len(), 1);
    assert!(header(&replies[0], "Subject").unwrap().contains("plain text"));
    assert_eq!(t.count("SELECT COUNT(*) FROM cases"), 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM messages WHERE reason = 'html_only'"), 1);
    assert!(s.inbox(&t.team).is_empty() && s.inbox(&t.triage).is_empty());
}

#[test]
fn bounces_and_auto_replies_get_nothing() {
    let t = Setup::new("auto", "", "");
    let s = servers();
    let bounce = format!(
        "From: MAILER-DAEMON@example.net (Mail Delivery System)\r\nTo: {sec}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; example.net\r\n\r\nFinal-Recipient: rfc822; x@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n",
        sec = t.security
    );
    let vacation = format!(
        "From: {r}\r\nTo: {sec}\r\nSubject: Out of office: back Monday\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <ooo-1@example.com>\r\n\r\nI am out of the office; an attacker could wait until I am back.\r\n",
        r = t.reporter,
        sec = t.security
    );
    s.submit(None, &t.security, bounce.as_bytes());
    s.submit(Some(&t.reporter), &t.security, vacation.as_bytes());
    assert_eq!(s.wait_inbox(&t.security, 2, BOUND).len(), 2);
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert_eq!(t.count("SELECT COUNT(*) FROM messages WHERE verdict = 'ignore'"), 2);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbox"), 0, "nothing queued");
    std::thread::sleep(Duration::from_secs(1));
    assert!(s.inbox(&t.reporter).is_empty(), "nothing sent to the sender");
    assert!(s.inbox(&t.team).is_empty() && s.inbox(&t.triage).is_empty());
}

#[test]
fn reply_with_case_tag_joins_the_case_and_reaches_the_team() {
    let t = Setup::new("followup", "", "");
    let s = servers();
    s.submit(Some(&t.reporter), &t.security, &t.report(1));
    s.wait_inbox(&t.security, 1, BOUND);
    assert!(t.cli(&["once"]).0);
    let case: String = t.db().query_row("SELECT id FROM cases", [], |r| r.get(0)).unwrap();
    s.wait_inbox(&t.team, 1, BOUND);

    let reply = format!(
        "From: {r}\r\nTo: {sec}\r\nSubject: Re: [{case}] Received: Path traversal\r\nMessage-ID: <followup-1@example.com>\r\n\r\nOne more detail: it also works with %5c on Windows.\r\n",
        r = t.reporter,
        sec = t.security
    );
    s.submit(Some(&t.reporter), &t.security, reply.as_bytes());
    s.wait_inbox(&t.security, 2, BOUND);
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");

    let team = s.wait_inbox(&t.team, 2, BOUND);
    assert_eq!(team.len(), 2, "the follow-up was forwarded to the team");
    assert!(
        team.iter()
            .any(|m| contains(m, "Follow-up") && contains(m, "Message-ID: <followup-1@example.com>"))
    );
    assert_eq!(s.inbox(&t.reporter).len(), 1, "no second acknowledgement");
    assert_eq!(t.count("SELECT COUNT(*) FROM cases"), 1);
    assert_eq!(
        t.db()
            .query_row(
                "SELECT case_id FROM messages WHERE message_id = 'followup-1@example.com'",
                [],
                |r| r.get::<_, String>(0)
            )
            .unwrap(),
        case
    );
}

#[test]
fn a_second_pass_processes_nothing_twice() {
    let t = Setup::new("twice", "after = \"move:Processed\"", "");
    let s = servers();
    for n in 0..3 {
        s.submit(Some(&t.reporter), &t.security, &t.report(n));
    }
    s.wait_inbox(&t.security, 3, BOUND);
    assert!(t.cli(&["once"]).0);
    s.wait_inbox(&t.reporter, 3, BOUND);
    // Put the processed messages back, as a confused operator (or a UIDVALIDITY reset) would.
    for (raw, _) in s.messages_in(&t.security, "Processed") {
        s.append(&t.security, &raw);
    }
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert!(out.contains("0 recorded, 3 duplicates"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.inbox(&t.reporter).len(), 3, "no second acknowledgements");
    assert_eq!(t.count("SELECT COUNT(*) FROM cases"), 3);
    assert!(s.inbox(&t.security).is_empty(), "moved out of INBOX after commit");
    assert_eq!(s.messages_in(&t.security, "Processed").len(), 6);
}

/// `once` over a backlog several batches long: each batch is marked done while the next one
/// is recorded, and the last batch too; nothing is left unmarked or read twice.
#[test]
fn once_in_batches_marks_every_message_done() {
    let t = Setup::new("batches", "batch_size = 4", "");
    let s = servers();
    for n in 0..13 {
        s.append(&t.security, &t.report(n));
    }
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert!(out.contains("13 recorded, 0 duplicates, 0 errors"), "{out}");
    let inbox = s.messages_in(&t.security, "INBOX");
    assert_eq!(inbox.len(), 13);
    for (raw, flags) in &inbox {
        let flags = flags.join(" ");
        assert!(
            flags.contains("Seen") && flags.contains("$Secintake"),
            "{:?} not marked done: {flags}",
            header(raw, "Message-ID")
        );
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM cases"), 13);
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert!(out.contains("0 recorded, 0 duplicates"), "nothing read twice: {out}");
}

#[test]
fn idle_delivers_without_waiting_for_a_poll() {
    // poll_interval is 10 minutes in the test config: only IDLE can answer within the bound.
    let t = Setup::new("idle", "", "");
    let s = servers();
    let mut daemon = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_secintake"))
            .arg("--config")
            .arg(&t.config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Give it time to connect and enter IDLE with an empty INBOX.
    std::thread::sleep(Duration::from_secs(2));
    s.submit(Some(&t.reporter), &t.security, &t.report(1));
    let acks = s.wait_inbox(&t.reporter, 1, BOUND);
    let _ = nix_term(&daemon.0);
    let status = daemon.0.wait().unwrap();
    assert_eq!(acks.len(), 1, "acknowledged while idling");
    assert!(status.success(), "daemon stopped cleanly on SIGTERM: {status:?}");
}

#[test]
fn tls_and_auth_work_both_ways() {
    let s = servers();
    let t = Setup::new("tls", "", "");
    // Rewrite the config for implicit-TLS IMAP and STARTTLS SMTP with AUTH, trusting the test CA.
    let text = std::fs::read_to_string(&t.config).unwrap();
    let text = text
        .replacen(
            &format!("port = {}", s.imap_port),
            &format!("port = {}", s.imaps_port),
            1,
        )
        .replacen(
            "tls = \"none\"",
            &format!("tls = \"implicit\"\nca_file = \"{}\"", s.ca_file.display()),
            1,
        )
        .replacen("host = \"127.0.0.1\"", "host = \"localhost\"", 2)
        .replacen(
            "tls = \"none\"",
            &format!(
                "tls = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"",
                s.ca_file.display(),
                t.security,
                t.dir.path().join("password").display()
            ),
            1,
        );
    std::fs::write(&t.config, text).unwrap();
    let (ok, out) = t.cli(&["check-config"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("imap: logged in") && out.contains("IDLE yes") && out.contains("authenticated"),
        "{out}"
    );

    s.submit(Some(&t.reporter), &t.security, &t.report(1));
    s.wait_inbox(&t.security, 1, BOUND);
    let (ok, out) = t.cli(&["once"]);
    assert!(ok, "{out}");
    assert_eq!(s.wait_inbox(&t.reporter, 1, BOUND).len(), 1);
    assert!(!out.contains(&s.password), "no secret in the output");
}

#[test]
fn plaintext_to_a_remote_host_is_refused() {
    let t = Setup::new("refuse", "", "");
    let text =
        std::fs::read_to_string(&t.config)
            .unwrap()
            .replacen("host = \"127.0.0.1\"", "host = \"imap.example.org\"", 1);
    std::fs::write(&t.config, text).unwrap();
    let (ok, out) = t.cli(&["check-config", "--offline"]);
    assert!(!ok);
    assert!(out.contains("mailbox.tls") && out.contains("loopback"), "{out}");
}

/// Kills the daemon if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to a child.
fn nix_term(child: &std::process::Child) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    assert!(status.success());
    Ok(())
}

#[allow(dead_code)]
fn unused() {
    let _ = report_from;
}
