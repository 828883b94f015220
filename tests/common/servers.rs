//! Real servers for the end-to-end tests: a private Dovecot and Postfix on loopback, started
//! once per test binary by `scripts/test-servers.sh` and stopped by its watchdog when the test
//! binary exits. If they cannot start, the test fails: a skipped real-server test is a
//! failed test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::TryStreamExt;

/// Ports and paths of one running server pair.
#[derive(Debug)]
pub struct Servers {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub smtps_port: u16,
    pub ca_file: PathBuf,
    pub password: String,
    _keep: tempfile::TempDir,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

/// The servers of this test binary, started on first use.
pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        let root = super::root();
        // Dovecot needs a short socket path and world-traversable parents: /tmp, not target/.
        let keep = tempfile::Builder::new()
            .prefix("sit-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = keep.path().to_path_buf();
        let out = Command::new(root.join("scripts/test-servers.sh"))
            .arg("start")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .output()
            .expect("running scripts/test-servers.sh");
        assert!(
            out.status.success(),
            "starting Dovecot and Postfix failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
            .expect("servers wrote env")
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let port = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("{k} missing in env"))
                .parse::<u16>()
                .unwrap()
        };
        Servers {
            imap_port: port("IMAP_PORT"),
            imaps_port: port("IMAPS_PORT"),
            smtp_port: port("SMTP_PORT"),
            smtps_port: port("SMTPS_PORT"),
            ca_file: PathBuf::from(&env["CA_FILE"]),
            password: env["PASSWORD"].clone(),
            dir,
            _keep: keep,
        }
    })
}

impl Servers {
    /// Runs a subcommand of the script against these servers (stop-imap, start-smtp, ...).
    pub fn control(&self, what: &str) {
        let out = Command::new(super::root().join("scripts/test-servers.sh"))
            .arg(what)
            .arg(&self.dir)
            .output()
            .expect("running scripts/test-servers.sh");
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Submits a raw message over SMTP (plain, loopback) from `from` to `to`.
    pub fn submit(&self, from: Option<&str>, to: &str, raw: &[u8]) {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.smtp_port)
                .build();
            let env =
                lettre::address::Envelope::new(from.map(|f| f.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
            t.send_raw(&env, raw).await.expect("SMTP submission accepted");
        });
    }

    /// Appends a raw message to a user's INBOX over IMAP (faster than SMTP for backlogs).
    pub fn append(&self, user: &str, raw: &[u8]) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = self.session(user).await;
            s.append("INBOX", None, None, raw).await.expect("APPEND");
            s.logout().await.ok();
        });
    }

    async fn session(&self, user: &str) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("IMAP connect");
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        client
            .login(user, &self.password)
            .await
            .map_err(|(e, _)| e)
            .expect("IMAP login")
    }

    /// Every message in `user`'s `folder`, with its flags, in UID order.
    pub fn messages_in(&self, user: &str, folder: &str) -> Vec<(Vec<u8>, Vec<String>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = self.session(user).await;
            let mb = match s.examine(folder).await {
                Ok(mb) => mb,
                Err(_) => return Vec::new(),
            };
            if mb.exists == 0 {
                s.logout().await.ok();
                return Vec::new();
            }
            let fetches: Vec<_> = s
                .fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let mut out: Vec<(u32, Vec<u8>, Vec<String>)> = fetches
                .iter()
                .map(|f| {
                    let flags = f.flags().map(|fl| format!("{fl:?}")).collect();
                    (f.uid.unwrap_or(0), f.body().unwrap_or_default().to_vec(), flags)
                })
                .collect();
            out.sort_by_key(|(u, _, _)| *u);
            s.logout().await.ok();
            out.into_iter().map(|(_, b, f)| (b, f)).collect()
        })
    }

    /// `user`'s INBOX.
    pub fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        self.messages_in(user, "INBOX").into_iter().map(|(b, _)| b).collect()
    }

    /// Waits (bounded) until `user`'s INBOX holds at least `n` messages; returns them.
    pub fn wait_inbox(&self, user: &str, n: usize, bound: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let msgs = self.inbox(user);
            if msgs.len() >= n || start.elapsed() > bound {
                return msgs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A test's own addresses and config on the shared servers.
pub struct Setup {
    pub tag: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub security: String,
    pub reporter: String,
    pub team: String,
    pub triage: String,
}

impl Setup {
    /// Unique mailboxes for test `tag`, and a config file wired to them. `extra_mailbox` and
    /// `extra_smtp` are appended to those tables (e.g. `after = "move:Processed"`).
    pub fn new(tag: &str, extra_mailbox: &str, extra_smtp: &str) -> Setup {
        let s = servers();
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("password");
        std::fs::write(&pw, format!("{}\n", s.password)).unwrap();
        let security = format!("sec-{tag}@example.org");
        let team = format!("tomcat-{tag}@example.org");
        let triage = format!("triage-{tag}@example.org");
        let reporter = format!("reporter-{tag}@example.com");
        let config = dir.path().join("secintake.toml");
        let text = format!(
            r#"
[mailbox]
kind = "imap"
host = "127.0.0.1"
port = {imap}
tls = "none"
username = "{security}"
password_file = "{pw}"
folder = "INBOX"
poll_interval = "10m"
{extra_mailbox}

[smtp]
kind = "smtp"
host = "127.0.0.1"
port = {smtp}
tls = "none"
from = "Security Team <{security}>"
retry_base = "1s"
retry_max = "2s"
{extra_smtp}

[database]
path = "cases.db"

[triage]
default_team = ["{triage}"]
auto_replies_per_day = 1000

[[project]]
id = "tomcat"
name = "Apache Tomcat"
keywords = ["tomcat", "catalina"]
team = ["{team}"]
"#,
            imap = s.imap_port,
            smtp = s.smtp_port,
            pw = pw.display(),
        );
        std::fs::write(&config, text).unwrap();
        Setup {
            tag: tag.into(),
            dir,
            config,
            security,
            reporter,
            team,
            triage,
        }
    }

    /// Runs `secintake --config CFG ARGS...`; returns (success, stdout + stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_secintake"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The test's database.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("cases.db")).unwrap()
    }

    /// A count from the database.
    pub fn count(&self, sql: &str) -> i64 {
        // Before the program under test has created its schema, everything counts zero.
        self.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    }

    /// A plain-text report from the reporter.
    pub fn report(&self, n: usize) -> Vec<u8> {
        report_from(&self.reporter, &self.security, &format!("{}-{n}", self.tag))
    }
}

/// A plain-text Tomcat vulnerability report with a unique Message-ID.
pub fn report_from(from: &str, to: &str, id: &str) -> Vec<u8> {
    format!(
        "From: Reporter <{from}>\r\nTo: {to}\r\nSubject: Path traversal in Tomcat {id}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <report-{id}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nAn unauthenticated attacker can read arbitrary files from a Tomcat\r\nserver through the WebDAV servlet with a crafted request:\r\n\r\n  curl -s 'http://host/webdav/..%2f..%2fconf/tomcat-users.xml'\r\n\r\nThis is a path traversal (CWE-22). Not disclosed anywhere yet.\r\n\r\nRegards,\r\nReporter\r\n"
    )
    .into_bytes()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The value of the first header `name` in a raw message (unfolded).
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}
