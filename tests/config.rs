//! Config and template loading: example configs parse, every problem of a bad config is
//! reported at once with its dotted key and line, secrets never show in Debug output, and
//! template overrides are checked when loaded and used when rendering.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use secintake::config::{Config, ConfigError, ConfigErrors, Mailbox, Transport};
use secintake::pipeline::Pipeline;
use secintake::reply::Templates;
use secintake::store::Store;

/// A valid config, one line per entry (relative paths resolve against the config's folder).
const BASE: &[&str] = &[
    "[mailbox]",
    "kind = \"maildir\"",
    "path = \"Maildir\"",
    "",
    "[smtp]",
    "kind = \"file\"",
    "dir = \"outbox\"",
    "from = \"Security Team <security@example.org>\"",
    "",
    "[database]",
    "path = \"secintake.db\"",
    "",
    "[triage]",
    "default_team = [\"security@example.org\"]",
    "",
    "[[project]]",
    "id = \"tomcat\"",
    "name = \"Apache Tomcat\"",
    "keywords = [\"tomcat\", \"coyote\"]",
    "team = [\"security@tomcat.example.org\"]",
];

/// `lines` joined into a file's text.
fn text(lines: &[&str]) -> String {
    let mut t = lines.join("\n");
    t.push('\n');
    t
}

/// The 1-based number of the only line equal to `line`.
fn line_no(lines: &[&str], line: &str) -> usize {
    let found: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == line)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{line:?} must occur exactly once");
    found.into_iter().next().unwrap()
}

fn parse_err(lines: &[&str]) -> ConfigErrors {
    match Config::parse(&text(lines), Path::new("/etc/secintake/secintake.toml")) {
        Ok(c) => panic!("expected errors, got a config: {c:?}"),
        Err(e) => e,
    }
}

/// The error for `key`, which must exist.
fn error_for<'e>(errors: &'e ConfigErrors, key: &str) -> &'e ConfigError {
    errors
        .errors
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no error for {key}; got:\n{errors}"))
}

#[test]
fn every_example_config_parses() {
    let dir = common::root().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config under {}", dir.display());
}

#[test]
fn the_base_config_of_these_tests_is_valid() {
    // Every error test below changes this one; it must be valid to begin with.
    let c = Config::parse(&text(BASE), Path::new("/etc/secintake/secintake.toml")).unwrap_or_else(|e| panic!("{e}"));
    match &c.mailbox {
        Mailbox::Maildir { path } => assert_eq!(path, Path::new("/etc/secintake/Maildir")),
        other => panic!("{other:?}"),
    }
    match &c.smtp.transport {
        Transport::File { dir } => assert_eq!(dir, Path::new("/etc/secintake/outbox")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn several_problems_are_reported_at_once_with_key_and_line() {
    let lines: Vec<&str> = vec![
        "[mailbox]",
        "kind = \"imap\"",
        "host = \"mail.example.org\"",
        "tls = \"none\"",
        "username = \"secintake\"",
        "password_env = \"SECINTAKE_IMAP_PASSWORD\"",
        "",
        "[smtp]",
        "kind = \"smtp\"",
        "host = \"127.0.0.1\"",
        "tls=\"none\"",
        "from = \"Security Team <security@example.org>\"",
        "username = \"secintake\"",
        "password = \"correct-horse-battery\"",
        "",
        "[database]",
        "path = \"secintake.db\"",
        "",
        "[triage]",
        "default_team = [\"security@example.org\"]",
        "",
        "[[project]]",
        "id = \"tomcat\"",
        "keywords = [\"tomcat\"]",
        "team = [\"security@tomcat.example.org\"]",
        "",
        "[[project]]",
        "id = \"httpd\"",
        "keywords = [\"httpd\"]",
        "team = [\"httpd security team\"]",
        "",
        "[[project]]",
        "id = \"kafka\"",
        "keywords = [\"kafka\"]",
        "team = [",
        "    \"security@kafka.example.org\",",
        "    \"kafka@@example.org\",",
        "]",
    ];
    let errors = parse_err(&lines);

    let tls = error_for(&errors, "mailbox.tls");
    assert_eq!(tls.line, Some(line_no(&lines, "tls = \"none\"")));
    assert!(tls.message.contains("loopback"), "{}", tls.message);

    let password = error_for(&errors, "smtp.password");
    assert_eq!(
        password.line,
        Some(line_no(&lines, "password = \"correct-horse-battery\""))
    );
    assert!(
        password.message.contains("password_file") && password.message.contains("password_env"),
        "{}",
        password.message
    );

    let team = error_for(&errors, "project[1].team[0]");
    assert_eq!(team.line, Some(line_no(&lines, "team = [\"httpd security team\"]")));
    let team = error_for(&errors, "project[2].team[1]");
    assert_eq!(team.line, Some(line_no(&lines, "    \"kafka@@example.org\",")));

    // SMTP without TLS to a loopback address is allowed: no error for it.
    assert!(errors.errors.iter().all(|e| e.key != "smtp.tls"), "{errors}");
    // In file order, and never echoing the password.
    let known: Vec<usize> = errors.errors.iter().filter_map(|e| e.line).collect();
    assert!(known.windows(2).all(|w| w.first() <= w.get(1)), "{errors}");
    let shown = format!("{errors}\n{errors:?}");
    assert!(!shown.contains("correct-horse-battery"), "{shown}");
    for e in &errors.errors {
        if let Some(line) = e.line {
            assert!(
                shown.contains(&format!("line {line}: {}", e.key)),
                "the message names line and key: {shown}"
            );
        }
    }
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let mut lines = BASE.to_vec();
    let at = line_no(&lines, "[triage]");
    lines.insert(at, "colour = \"blue\"");
    let errors = parse_err(&lines);
    let e = errors
        .errors
        .iter()
        .find(|e| e.key.contains("colour") || e.message.contains("colour"))
        .unwrap_or_else(|| panic!("the unknown key is not named:\n{errors}"));
    assert_eq!(e.line, Some(line_no(&lines, "colour = \"blue\"")), "{errors}");
}

#[test]
fn an_unknown_key_does_not_hide_the_other_problems() {
    // A typo'd key and a bad address: both are reported in one run, so the operator does
    // not fix one, restart, and only then learn about the next.
    let mut lines = BASE.to_vec();
    let at = line_no(&lines, "dir = \"outbox\"");
    lines.insert(at, "pasword_file = \"/etc/secintake/smtp.pw\"");
    let team = lines
        .iter_mut()
        .find(|l| **l == "team = [\"security@tomcat.example.org\"]")
        .unwrap();
    *team = "team = [\"tomcat security\"]";
    let errors = parse_err(&lines);
    assert!(
        errors
            .errors
            .iter()
            .any(|e| e.key.contains("pasword_file") || e.message.contains("pasword_file")),
        "the unknown key is not named:\n{errors}"
    );
    let team = error_for(&errors, "project[0].team[0]");
    assert_eq!(team.line, Some(line_no(&lines, "team = [\"tomcat security\"]")));
}

#[test]
fn a_syntax_error_names_its_line() {
    for (bad, what) in [
        ("kind = \"file", "unterminated string"),
        ("dir = outbox", "bare word value"),
        ("[smtp", "unclosed table header"),
    ] {
        let mut lines = BASE.to_vec();
        let at = line_no(&lines, "[database]");
        lines.insert(at - 1, bad);
        let errors = parse_err(&lines);
        let line = line_no(&lines, bad);
        assert!(
            errors.errors.iter().any(|e| e.line == Some(line)),
            "{what}: no error on line {line}:\n{errors}"
        );
    }
    // A type error is located too.
    let mut lines = BASE.to_vec();
    let at = line_no(&lines, "default_team = [\"security@example.org\"]");
    lines.insert(at, "auto_replies_per_day = \"five\"");
    let errors = parse_err(&lines);
    let line = line_no(&lines, "auto_replies_per_day = \"five\"");
    assert!(
        errors.errors.iter().any(|e| e.line == Some(line)),
        "type error: no error on line {line}:\n{errors}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets.

const SECRET: &str = "hunter2-secret";
const SECRET_VAR: &str = "SECINTAKE_TEST_SECRET_VALUE";
const SECRET_TEST: &str = "debug_output_never_contains_secrets";

#[test]
fn debug_output_never_contains_secrets() {
    if std::env::var_os(SECRET_VAR).is_none() {
        // Tests cannot set environment variables (`set_var` is unsafe in edition 2024 and
        // unsafe code is forbidden), so this test runs itself again in a child process that
        // has the variable.
        let out = Command::new(std::env::current_exe().unwrap())
            .args([SECRET_TEST, "--exact", "--test-threads=1", "--nocapture"])
            .env(SECRET_VAR, SECRET)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp.pw"), format!("{SECRET}\n")).unwrap();
    let lines = [
        "[mailbox]",
        "kind = \"imap\"",
        "host = \"imap.example.org\"",
        "username = \"secintake\"",
        &format!("password_env = \"{SECRET_VAR}\""),
        "",
        "[smtp]",
        "kind = \"smtp\"",
        "host = \"smtp.example.org\"",
        "from = \"Security Team <security@example.org>\"",
        "username = \"secintake\"",
        "password_file = \"smtp.pw\"",
        "",
        "[database]",
        "path = \"secintake.db\"",
        "",
        "[triage]",
        "default_team = [\"security@example.org\"]",
    ];
    let config = Config::parse(&text(&lines), &dir.path().join("secintake.toml")).unwrap_or_else(|e| panic!("{e}"));
    // The config really points at the secret, so not finding it below means something.
    let Mailbox::Imap(imap) = &config.mailbox else {
        panic!("imap mailbox expected")
    };
    assert_eq!(imap.secret.load().unwrap().as_deref(), Some(SECRET));
    let Transport::Smtp(smtp) = &config.smtp.transport else {
        panic!("smtp transport expected")
    };
    assert_eq!(smtp.secret.load().unwrap().as_deref(), Some(SECRET));
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains(SECRET), "Debug shows the secret:\n{shown}");
    }

    // A token command may hold the secret in its text.
    let lines = [
        "[mailbox]",
        "kind = \"imap\"",
        "host = \"imap.example.org\"",
        "username = \"secintake\"",
        "auth = \"xoauth2\"",
        &format!("token_command = \"printf {SECRET}\""),
        "",
        "[smtp]",
        "kind = \"file\"",
        "dir = \"outbox\"",
        "from = \"Security Team <security@example.org>\"",
        "",
        "[database]",
        "path = \"secintake.db\"",
        "",
        "[triage]",
        "default_team = [\"security@example.org\"]",
    ];
    let config = Config::parse(&text(&lines), &dir.path().join("secintake.toml")).unwrap_or_else(|e| panic!("{e}"));
    let Mailbox::Imap(imap) = &config.mailbox else {
        panic!("imap mailbox expected")
    };
    assert_eq!(imap.secret.load().unwrap().as_deref(), Some(SECRET));
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains(SECRET), "Debug shows the token command:\n{shown}");
    }

    // A password written into the file is refused without being repeated.
    let lines = [
        "[mailbox]",
        "kind = \"maildir\"",
        "path = \"Maildir\"",
        "",
        "[smtp]",
        "kind = \"smtp\"",
        "host = \"smtp.example.org\"",
        "from = \"Security Team <security@example.org>\"",
        "username = \"secintake\"",
        &format!("password = \"{SECRET}\""),
        "",
        "[database]",
        "path = \"secintake.db\"",
        "",
        "[triage]",
        "default_team = [\"security@example.org\"]",
    ];
    let errors = parse_err(&lines);
    error_for(&errors, "smtp.password");
    for shown in [format!("{errors}"), format!("{errors:?}")] {
        assert!(!shown.contains(SECRET), "the error repeats the password:\n{shown}");
    }
}

#[test]
fn a_password_in_the_file_is_refused_whatever_the_transport() {
    // "Secrets never live in the file": a password left in a [smtp] or [mailbox] table that
    // does not use it (file transport, Maildir) is still a secret in the file.
    let mut lines = BASE.to_vec();
    let smtp_at = line_no(&lines, "dir = \"outbox\"");
    lines.insert(smtp_at, "password = \"left-over-smtp-password\"");
    let mailbox_at = line_no(&lines, "path = \"Maildir\"");
    lines.insert(mailbox_at, "password = \"left-over-imap-password\"");
    let errors = parse_err(&lines);
    let e = error_for(&errors, "smtp.password");
    assert_eq!(e.line, Some(line_no(&lines, "password = \"left-over-smtp-password\"")));
    let e = error_for(&errors, "mailbox.password");
    assert_eq!(e.line, Some(line_no(&lines, "password = \"left-over-imap-password\"")));
}

// ---------------------------------------------------------------------------------------------
// Templates.

#[test]
fn broken_template_overrides_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ack = write(
        "ack.txt",
        "Subject: [{{ case_id }}] Received\n\n{{ case_id + }}\nmore\n",
    );
    let forward = write("forward.txt", "Hello team,\n\nnew case {{ case_id }}.\n");
    let question = write(
        "reject_question.txt",
        "Subject: Not a report\n\nHello,\n{{ no_such_variable }}\n",
    );
    let errors = match Templates::load(Some(dir.path())) {
        Ok(_) => panic!("broken templates were accepted"),
        Err(e) => e,
    };
    let all = errors.join("\n");
    let named = |path: &Path, what: &str| {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        errors
            .iter()
            .find(|e| e.contains(&file))
            .unwrap_or_else(|| panic!("{what}: {file} not reported:\n{all}"))
            .clone()
    };
    let e = named(&ack, "syntax error");
    assert!(e.contains("line 3"), "syntax error on line 3: {e}");
    assert!(e.contains(&ack.display().to_string()), "the error names the file: {e}");
    let e = named(&forward, "missing Subject line");
    assert!(e.contains("Subject"), "{e}");
    let e = named(&question, "undefined variable");
    assert!(e.contains("line 4"), "undefined variable on line 4: {e}");
    // Only the broken ones: the other seven kinds are fine with the embedded templates.
    for e in &errors {
        assert!(
            [&ack, &forward, &question]
                .iter()
                .any(|p| { e.contains(p.file_name().unwrap().to_string_lossy().as_ref()) }),
            "an error about a template that was not broken: {e}\n{all}"
        );
    }
}

#[test]
fn a_valid_template_override_is_used_in_replies() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("tpl");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(
        tpl.join("ack.txt"),
        "Subject: Custom ack for {{ case_id }}\n\nOVERRIDE-7f3a: we have your report \"{{ subject }}\".\n",
    )
    .unwrap();
    let mut lines = BASE.to_vec();
    lines.extend_from_slice(&["", "[templates]", "dir = \"tpl\""]);
    let config_path = dir.path().join("secintake.toml");
    std::fs::write(&config_path, text(&lines)).unwrap();
    let config = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.templates_dir.as_deref(), Some(tpl.as_path()));
    let templates = Templates::load(config.templates_dir.as_deref()).unwrap_or_else(|e| panic!("{e:?}"));
    let mut store = Store::open(&config.database).unwrap();
    let pipeline = Pipeline::new(config, templates);
    let raw = common::report_mail(
        "Igor Petrenko <igor@example.com>",
        "override@example.com",
        "Tomcat HTTP/2 crash",
        &[],
    );
    let results = pipeline
        .process_batch(&mut store, &[common::item("local", "1.eml", raw)])
        .unwrap();
    let rec = common::recorded("report", results.first().unwrap());
    let case = rec.case.clone().expect("a case");
    let body = |kind: &str| -> String {
        let bytes: Vec<u8> = store
            .conn()
            .query_row(
                "SELECT b.body FROM outbox o JOIN outbox_body b USING (id) WHERE o.kind = ?1",
                [kind],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("no {kind}: {e}"));
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let ack = body("ack");
    assert!(ack.contains("OVERRIDE-7f3a"), "{ack}");
    assert!(ack.contains(&format!("Subject: Custom ack for {case}")), "{ack}");
    // Kinds without an override keep the embedded text.
    let forward = body("forward");
    assert!(!forward.contains("OVERRIDE-7f3a"));
    assert!(forward.contains(&format!("[{case}]")), "{forward}");
}
