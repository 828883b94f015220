//! Configuration: TOML text -> [`RawConfig`] (serde, unknown keys refused) -> validated [`Config`].
//!
//! Two steps, so that every problem is reported at once: serde catches syntax and type errors
//! (toml names the line itself), then a validator builds the [`Config`] and checks meaning — addresses, paths,
//! durations, cross references — and names each bad key with its line, found through
//! `toml_edit`'s span-keeping parse of the same text.
//!
//! Secrets never live in the file: `password_file`, `password_env` or `token_file` /
//! `token_command` point at them, and a `password = ...` key is refused by name. Nothing here
//! reads the secret itself; [`Secret::load`] does, at connection time, so a rotated password
//! needs no reload.
//!
//! Relative paths are resolved against the directory of the config file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every problem found in a config file, each with its key path and line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the problems are in.
    pub path: PathBuf,
    /// The problems, in file order where the line is known.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in {}", self.errors.len(), self.path.display())?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// One config problem: the dotted key, its line (1-based) when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `project[1].team[0]`.
    pub key: String,
    /// 1-based line of the key in the file, when it could be located.
    pub line: Option<usize>,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw form: exactly what the TOML says.

/// The file as written. Unknown keys are collected by `serde_ignored` and reported as errors.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    mailbox: RawMailbox,
    smtp: RawSmtp,
    database: RawDatabase,
    #[serde(default)]
    triage: RawTriage,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    project: Vec<RawProject>,
}

#[derive(Debug, Deserialize)]
struct RawMailbox {
    kind: String,
    path: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    ca_file: Option<String>,
    username: Option<String>,
    password: Option<toml::Value>,
    password_file: Option<String>,
    password_env: Option<String>,
    auth: Option<String>,
    token_file: Option<String>,
    token_command: Option<String>,
    folder: Option<String>,
    after: Option<String>,
    keyword: Option<String>,
    poll_interval: Option<String>,
    idle_timeout: Option<String>,
    batch_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RawSmtp {
    kind: String,
    from: String,
    dir: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    ca_file: Option<String>,
    username: Option<String>,
    password: Option<toml::Value>,
    password_file: Option<String>,
    password_env: Option<String>,
    pool_size: Option<u32>,
    timeout: Option<String>,
    retry_base: Option<String>,
    retry_max: Option<String>,
    max_age: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawDatabase {
    path: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawTriage {
    #[serde(default)]
    default_team: Vec<String>,
    case_prefix: Option<String>,
    max_message_size: Option<toml::Value>,
    auto_replies_per_day: Option<u32>,
    security_model_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTemplates {
    dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawProject {
    id: String,
    name: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    team: Vec<String>,
    security_model_url: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated form.

/// A validated configuration. Built only by [`Config::load`] / [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages and reload).
    pub path: PathBuf,
    /// Where mail comes from.
    pub mailbox: Mailbox,
    /// Where mail goes to, and as whom.
    pub smtp: Smtp,
    /// The SQLite database file.
    pub database: PathBuf,
    /// Triage settings that are not per project.
    pub triage: Triage,
    /// A folder whose `*.txt` files override the embedded reply templates.
    pub templates_dir: Option<PathBuf>,
    /// Projects, in file order; routing ties are broken by nothing (a tie routes to triage).
    pub projects: Vec<Project>,
}

/// Where messages come from.
#[derive(Debug, Clone)]
pub enum Mailbox {
    /// A Maildir, or a folder of `.eml` files (for local runs and tests).
    Maildir {
        /// The folder.
        path: PathBuf,
    },
    /// An IMAP folder.
    Imap(Imap),
}

/// Transport security for IMAP and SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS; refusing to go on without it.
    StartTls,
    /// No TLS: only allowed to a loopback address.
    None,
}

/// How to authenticate to IMAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAuth {
    /// IMAP LOGIN.
    Login,
    /// AUTHENTICATE PLAIN.
    Plain,
    /// AUTHENTICATE XOAUTH2 with an access token from a file or command.
    XOAuth2,
}

/// What to do to a message on the server once it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Add `\Seen` and the keyword.
    Seen,
    /// Move to this folder.
    Move(String),
}

/// Where a secret comes from. The value is read at connection time and never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// No secret configured.
    None,
    /// Read the first line of this file.
    File(PathBuf),
    /// Read this environment variable.
    Env(String),
    /// Run this command (via `sh -c`) and take its first line of output.
    Command(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The locations are not secret, the values are: only locations are printed.
        match self {
            Secret::None => write!(f, "None"),
            Secret::File(p) => write!(f, "File({})", p.display()),
            Secret::Env(v) => write!(f, "Env({v})"),
            Secret::Command(_) => write!(f, "Command(..)"),
        }
    }
}

impl Secret {
    /// Reads the secret. The error names where it looked, never what it found.
    pub fn load(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context;
        let value = match self {
            Secret::None => return Ok(None),
            Secret::File(path) => {
                std::fs::read_to_string(path).with_context(|| format!("reading secret file {}", path.display()))?
            }
            Secret::Env(var) => {
                std::env::var(var).with_context(|| format!("reading secret from environment variable {var}"))?
            }
            Secret::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .context("running the configured token_command")?;
                if !out.status.success() {
                    anyhow::bail!("token_command exited with {}", out.status);
                }
                String::from_utf8(out.stdout).context("token_command printed non-UTF-8")?
            }
        };
        let first = value.lines().next().unwrap_or("").trim_end().to_string();
        if first.is_empty() {
            anyhow::bail!("the configured secret is empty");
        }
        Ok(Some(first))
    }
}

/// IMAP settings.
#[derive(Debug, Clone)]
pub struct Imap {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: Tls,
    /// Extra PEM CA bundle to trust (private CAs, tests).
    pub ca_file: Option<PathBuf>,
    /// Login name.
    pub username: String,
    /// Authentication mechanism.
    pub auth: ImapAuth,
    /// Password (LOGIN, PLAIN) or access token (XOAUTH2).
    pub secret: Secret,
    /// The folder to read.
    pub folder: String,
    /// What to do with a message once committed.
    pub after: After,
    /// Keyword added to processed messages (with `after = "seen"`).
    pub keyword: String,
    /// Poll interval when the server has no IDLE.
    pub poll_interval: Duration,
    /// How long one IDLE lasts before it is re-issued (RFC 2177: under 29 minutes).
    pub idle_timeout: Duration,
    /// Messages fetched and committed per batch.
    pub batch_size: u32,
}

/// SMTP / outbox settings.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// The security address we send as, e.g. `Security Team <security@example.org>`.
    pub from: lettre::message::Mailbox,
    /// How mail leaves.
    pub transport: Transport,
    /// First retry delay; doubled per attempt.
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
    /// Give up on a message this long after it was queued.
    pub max_age: Duration,
}

/// How outgoing mail leaves.
#[derive(Debug, Clone)]
pub enum Transport {
    /// One `.eml` per message in this folder.
    File {
        /// The folder.
        dir: PathBuf,
    },
    /// SMTP submission.
    Smtp(SmtpServer),
}

/// An SMTP server to submit to.
#[derive(Debug, Clone)]
pub struct SmtpServer {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: Tls,
    /// Extra PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// AUTH user name, when the server wants one.
    pub username: Option<String>,
    /// AUTH password.
    pub secret: Secret,
    /// Connections used at once.
    pub pool_size: u32,
    /// Per-command timeout.
    pub timeout: Duration,
}

/// Triage settings.
#[derive(Debug, Clone)]
pub struct Triage {
    /// Who gets reports that route to no project.
    pub default_team: Vec<lettre::Address>,
    /// Case id prefix: `SEC` gives `SEC-2026-0001`.
    pub case_prefix: String,
    /// Messages over this many bytes get the `too_large` reply.
    pub max_message_size: usize,
    /// At most this many automatic replies to one address per 24 hours.
    pub auto_replies_per_day: u32,
    /// Security-model page quoted in acknowledgements when the project has none.
    pub security_model_url: Option<String>,
}

/// A project reports can be routed to.
#[derive(Debug, Clone)]
pub struct Project {
    /// Short id (`tomcat`): the routing result and the dashboard folder.
    pub id: String,
    /// Display name (`Apache Tomcat`).
    pub name: String,
    /// Whole-word, case-insensitive keywords.
    pub keywords: Vec<String>,
    /// The team's private addresses.
    pub team: Vec<lettre::Address>,
    /// The project's security-model page.
    pub security_model_url: Option<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_path_buf(),
            errors: vec![ConfigError {
                key: "(file)".into(),
                line: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` names the file and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            path: path.to_path_buf(),
            errors,
        };
        let syntax = |e: toml::de::Error| {
            let line = e.span().map(|s| line_of(text, s.start));
            fail(vec![ConfigError {
                key: "(syntax)".into(),
                line,
                message: e.message().to_string(),
            }])
        };
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(syntax)?;
        let raw: RawConfig = serde_ignored::deserialize(de, |path| unknown.push(path.to_string())).map_err(syntax)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut v = Validator {
            base,
            errors: Vec::new(),
            doc: toml_edit::Document::parse(text.to_string()).ok(),
            text,
        };
        for key in &unknown {
            let segs: Vec<Seg<'_>> = key
                .split('.')
                .map(|p| p.parse::<usize>().map(Seg::Index).unwrap_or(Seg::Key(p)))
                .collect();
            v.err(&segs, "unknown key");
        }
        let config = v.build(raw, path);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            let mut errors = v.errors;
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(fail(errors))
        }
    }

    /// The security address alone (no display name).
    pub fn security_address(&self) -> &lettre::Address {
        &self.smtp.from.email
    }

    /// The project with this id.
    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

/// One step of a key path: a table key or an array index.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Validator<'t> {
    base: PathBuf,
    errors: Vec<ConfigError>,
    doc: Option<toml_edit::Document<String>>,
    text: &'t str,
}

impl Validator<'_> {
    fn err(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let key = path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => format!(".{k}"),
                Seg::Index(i) => format!("[{i}]"),
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string();
        let line = self.locate(path).map(|off| line_of(self.text, off));
        self.errors.push(ConfigError {
            key,
            line,
            message: message.into(),
        });
    }

    /// Byte offset of the deepest part of `path` that exists in the document.
    fn locate(&self, path: &[Seg<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best = None;
        let mut node = Node::Table(doc.as_table());
        for seg in path {
            let next = match (node, seg) {
                (Node::Table(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, item)| {
                    best = key.span().map(|s| s.start).or(best);
                    Node::of_item(item)
                }),
                (Node::Inline(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, value)| {
                    best = key.span().map(|s| s.start).or(best);
                    Node::of_item(value)
                }),
                (Node::Tables(a), Seg::Index(i)) => a.get(*i).map(|t| {
                    best = t.span().map(|s| s.start).or(best);
                    Node::Table(t)
                }),
                (Node::Array(a), Seg::Index(i)) => a.get(*i).map(|v| {
                    best = v.span().map(|s| s.start).or(best);
                    Node::of_value(v)
                }),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        best
    }

    fn path(&mut self, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        if p.is_absolute() { p } else { self.base.join(p) }
    }

    fn duration(&mut self, key: &[Seg<'_>], value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(key, "must be longer than zero");
                    default
                }
                Err(e) => {
                    self.err(key, format!("not a duration like \"60s\" or \"5m\": {e}"));
                    default
                }
            },
        }
    }

    fn tls(&mut self, key: &[Seg<'_>], value: Option<&str>, host: &str, default: Tls) -> Tls {
        let tls = match value {
            None => default,
            Some("implicit") => Tls::Implicit,
            Some("starttls") => Tls::StartTls,
            Some("none") => Tls::None,
            Some(other) => {
                self.err(
                    key,
                    format!("unknown value {other:?}; use \"implicit\", \"starttls\" or \"none\""),
                );
                default
            }
        };
        if tls == Tls::None && !is_loopback(host) {
            self.err(
                key,
                format!("tls = \"none\" is only allowed to a loopback address, not {host:?}"),
            );
        }
        tls
    }

    /// Refuses a password written into the file, whatever the kind of the table.
    fn no_inline_password(&mut self, table: &'static str, password: &Option<toml::Value>) {
        if password.is_some() {
            self.err(
                &[Seg::Key(table), Seg::Key("password")],
                "passwords do not belong in the config file; use password_file or password_env",
            );
        }
    }

    fn secret(&mut self, table: &'static str, file: &Option<String>, env: &Option<String>) -> Secret {
        match (file, env) {
            (Some(_), Some(_)) => {
                self.err(
                    &[Seg::Key(table), Seg::Key("password_env")],
                    "set password_file or password_env, not both",
                );
                Secret::None
            }
            (Some(f), None) => Secret::File(self.path(f)),
            (None, Some(e)) => Secret::Env(e.clone()),
            (None, None) => Secret::None,
        }
    }

    fn address(&mut self, key: &[Seg<'_>], value: &str) -> Option<lettre::Address> {
        match value.parse::<lettre::Address>() {
            Ok(a) => Some(a),
            Err(e) => {
                self.err(key, format!("{value:?} is not an email address: {e}"));
                None
            }
        }
    }

    fn build(&mut self, raw: RawConfig, path: &Path) -> Config {
        let mailbox = self.mailbox(&raw.mailbox);
        let smtp = self.smtp(&raw.smtp);
        let database = self.path(&raw.database.path);
        let triage = self.triage(&raw.triage);
        let templates_dir = raw.templates.dir.as_deref().map(|d| self.path(d));
        let mut projects = Vec::new();
        for (i, p) in raw.project.iter().enumerate() {
            projects.push(self.project(i, p));
        }
        for (i, p) in projects.iter().enumerate() {
            if projects.iter().take(i).any(|q| q.id == p.id) {
                self.err(
                    &[Seg::Key("project"), Seg::Index(i), Seg::Key("id")],
                    format!("duplicate project id {:?}", p.id),
                );
            }
        }
        Config {
            path: path.to_path_buf(),
            mailbox,
            smtp,
            database,
            triage,
            templates_dir,
            projects,
        }
    }

    fn mailbox(&mut self, m: &RawMailbox) -> Mailbox {
        const T: &str = "mailbox";
        let k = |key: &'static str| [Seg::Key(T), Seg::Key(key)];
        self.no_inline_password(T, &m.password);
        match m.kind.as_str() {
            "maildir" => {
                let path = match &m.path {
                    Some(p) => self.path(p),
                    None => {
                        self.err(&k("path"), "required when kind = \"maildir\"");
                        PathBuf::new()
                    }
                };
                Mailbox::Maildir { path }
            }
            "imap" => {
                let host = m.host.clone().unwrap_or_else(|| {
                    self.err(&k("host"), "required when kind = \"imap\"");
                    String::new()
                });
                let tls = self.tls(&k("tls"), m.tls.as_deref(), &host, Tls::Implicit);
                let port = m.port.unwrap_or(if tls == Tls::Implicit { 993 } else { 143 });
                let username = m.username.clone().unwrap_or_else(|| {
                    self.err(&k("username"), "required when kind = \"imap\"");
                    String::new()
                });
                let auth = match m.auth.as_deref().unwrap_or("login") {
                    "login" => ImapAuth::Login,
                    "plain" => ImapAuth::Plain,
                    "xoauth2" => ImapAuth::XOAuth2,
                    other => {
                        self.err(
                            &k("auth"),
                            format!("unknown {other:?}; use \"login\", \"plain\" or \"xoauth2\""),
                        );
                        ImapAuth::Login
                    }
                };
                let secret = if auth == ImapAuth::XOAuth2 {
                    if m.password.is_some() || m.password_file.is_some() || m.password_env.is_some() {
                        self.err(&k("auth"), "xoauth2 takes token_file or token_command, not a password");
                    }
                    match (&m.token_file, &m.token_command) {
                        (Some(f), None) => Secret::File(self.path(f)),
                        (None, Some(c)) => Secret::Command(c.clone()),
                        _ => {
                            self.err(
                                &k("token_file"),
                                "xoauth2 needs exactly one of token_file or token_command",
                            );
                            Secret::None
                        }
                    }
                } else {
                    let s = self.secret(T, &m.password_file, &m.password_env);
                    if s == Secret::None {
                        self.err(&k("password_file"), "IMAP login needs password_file or password_env");
                    }
                    s
                };
                let after = match m.after.as_deref().unwrap_or("seen") {
                    "seen" => After::Seen,
                    other => match other.strip_prefix("move:") {
                        Some(folder) if !folder.trim().is_empty() => After::Move(folder.trim().to_string()),
                        _ => {
                            self.err(
                                &k("after"),
                                format!("unknown {other:?}; use \"seen\" or \"move:FOLDER\""),
                            );
                            After::Seen
                        }
                    },
                };
                let keyword = m.keyword.clone().unwrap_or_else(|| "$Secintake".into());
                if keyword.is_empty()
                    || !keyword
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
                {
                    self.err(&k("keyword"), "must be a non-empty IMAP atom like \"$Secintake\"");
                }
                let poll_interval =
                    self.duration(&k("poll_interval"), m.poll_interval.as_deref(), Duration::from_secs(60));
                let idle_timeout = self.duration(
                    &k("idle_timeout"),
                    m.idle_timeout.as_deref(),
                    Duration::from_secs(25 * 60),
                );
                if idle_timeout >= Duration::from_secs(29 * 60) {
                    self.err(&k("idle_timeout"), "must stay under 29 minutes (RFC 2177)");
                }
                let batch_size = m.batch_size.unwrap_or(200);
                if batch_size == 0 {
                    self.err(&k("batch_size"), "must be at least 1");
                }
                Mailbox::Imap(Imap {
                    host,
                    port,
                    tls,
                    ca_file: m.ca_file.as_deref().map(|f| self.path(f)),
                    username,
                    auth,
                    secret,
                    folder: m.folder.clone().unwrap_or_else(|| "INBOX".into()),
                    after,
                    keyword,
                    poll_interval,
                    idle_timeout,
                    batch_size: batch_size.max(1),
                })
            }
            other => {
                self.err(&k("kind"), format!("unknown {other:?}; use \"maildir\" or \"imap\""));
                Mailbox::Maildir { path: PathBuf::new() }
            }
        }
    }

    fn smtp(&mut self, s: &RawSmtp) -> Smtp {
        const T: &str = "smtp";
        let k = |key: &'static str| [Seg::Key(T), Seg::Key(key)];
        self.no_inline_password(T, &s.password);
        let from = match s.from.parse::<lettre::message::Mailbox>() {
            Ok(m) => m,
            Err(e) => {
                self.err(
                    &k("from"),
                    format!(
                        "{:?} is not a mailbox like \"Security Team <security@example.org>\": {e}",
                        s.from
                    ),
                );
                lettre::message::Mailbox::new(
                    None,
                    lettre::Address::new("security", "invalid").expect("static address"),
                )
            }
        };
        let transport = match s.kind.as_str() {
            "file" => {
                let dir = match &s.dir {
                    Some(d) => self.path(d),
                    None => {
                        self.err(&k("dir"), "required when kind = \"file\"");
                        PathBuf::new()
                    }
                };
                Transport::File { dir }
            }
            "smtp" => {
                let host = s.host.clone().unwrap_or_else(|| {
                    self.err(&k("host"), "required when kind = \"smtp\"");
                    String::new()
                });
                let tls = self.tls(&k("tls"), s.tls.as_deref(), &host, Tls::StartTls);
                let port = s.port.unwrap_or(match tls {
                    Tls::Implicit => 465,
                    Tls::StartTls => 587,
                    Tls::None => 25,
                });
                let secret = self.secret(T, &s.password_file, &s.password_env);
                if s.username.is_some() && secret == Secret::None {
                    self.err(
                        &k("password_file"),
                        "username is set, so password_file or password_env is needed",
                    );
                }
                if s.username.is_none() && secret != Secret::None {
                    self.err(&k("username"), "a password is configured, so username is needed");
                }
                let pool_size = s.pool_size.unwrap_or(4);
                if pool_size == 0 || pool_size > 64 {
                    self.err(&k("pool_size"), "must be between 1 and 64");
                }
                Transport::Smtp(SmtpServer {
                    host,
                    port,
                    tls,
                    ca_file: s.ca_file.as_deref().map(|f| self.path(f)),
                    username: s.username.clone(),
                    secret,
                    pool_size: pool_size.clamp(1, 64),
                    timeout: self.duration(&k("timeout"), s.timeout.as_deref(), Duration::from_secs(60)),
                })
            }
            other => {
                self.err(&k("kind"), format!("unknown {other:?}; use \"file\" or \"smtp\""));
                Transport::File { dir: PathBuf::new() }
            }
        };
        let retry_base = self.duration(&k("retry_base"), s.retry_base.as_deref(), Duration::from_secs(60));
        let retry_max = self.duration(&k("retry_max"), s.retry_max.as_deref(), Duration::from_secs(3600));
        let max_age = self.duration(&k("max_age"), s.max_age.as_deref(), Duration::from_secs(5 * 86400));
        Smtp {
            from,
            transport,
            retry_base,
            retry_max,
            max_age,
        }
    }

    fn triage(&mut self, t: &RawTriage) -> Triage {
        const T: &str = "triage";
        let mut default_team = Vec::new();
        for (i, a) in t.default_team.iter().enumerate() {
            if let Some(a) = self.address(&[Seg::Key(T), Seg::Key("default_team"), Seg::Index(i)], a) {
                default_team.push(a);
            }
        }
        if t.default_team.is_empty() {
            self.err(
                &[Seg::Key(T), Seg::Key("default_team")],
                "at least one address is needed: unrouted reports go there",
            );
        }
        let case_prefix = t.case_prefix.clone().unwrap_or_else(|| "SEC".into());
        if case_prefix.is_empty()
            || case_prefix.len() > 16
            || !case_prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            self.err(
                &[Seg::Key(T), Seg::Key("case_prefix")],
                "must be 1-16 characters A-Z or 0-9",
            );
        }
        let max_message_size = match &t.max_message_size {
            None => 10 * 1024 * 1024,
            Some(v) => match parse_size(v) {
                Some(n) if n > 0 => n,
                _ => {
                    self.err(
                        &[Seg::Key(T), Seg::Key("max_message_size")],
                        "must be a positive size like 10485760 or \"10MiB\"",
                    );
                    10 * 1024 * 1024
                }
            },
        };
        if let Some(url) = &t.security_model_url {
            self.url(&[Seg::Key(T), Seg::Key("security_model_url")], url);
        }
        Triage {
            default_team,
            case_prefix,
            max_message_size,
            auto_replies_per_day: t.auto_replies_per_day.unwrap_or(5),
            security_model_url: t.security_model_url.clone(),
        }
    }

    fn url(&mut self, key: &[Seg<'_>], url: &str) {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.err(key, format!("{url:?} is not an http(s) URL"));
        }
    }

    fn project(&mut self, i: usize, p: &RawProject) -> Project {
        let k = |key: &'static str| [Seg::Key("project"), Seg::Index(i), Seg::Key(key)];
        let id_ok = !p.id.is_empty()
            && p.id.len() <= 64
            && p.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !p.id.starts_with(['-', '_']);
        if !id_ok {
            self.err(
                &k("id"),
                format!(
                    "{:?} must be lowercase letters, digits, '-' or '_' (it names a folder)",
                    p.id
                ),
            );
        }
        if p.keywords.is_empty() {
            self.err(
                &k("keywords"),
                "at least one keyword is needed to route reports to this project",
            );
        }
        let mut keywords = Vec::new();
        for (j, kw) in p.keywords.iter().enumerate() {
            let kw = kw.trim();
            if kw.chars().count() < 2 {
                self.err(
                    &[Seg::Key("project"), Seg::Index(i), Seg::Key("keywords"), Seg::Index(j)],
                    "a keyword needs at least two characters",
                );
            } else {
                keywords.push(kw.to_string());
            }
        }
        let mut team = Vec::new();
        for (j, a) in p.team.iter().enumerate() {
            if let Some(a) = self.address(
                &[Seg::Key("project"), Seg::Index(i), Seg::Key("team"), Seg::Index(j)],
                a,
            ) {
                team.push(a);
            }
        }
        if p.team.is_empty() {
            self.err(
                &k("team"),
                "at least one address is needed: reports for this project go there",
            );
        }
        if let Some(url) = &p.security_model_url {
            self.url(&k("security_model_url"), url);
        }
        Project {
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            keywords,
            team,
            security_model_url: p.security_model_url.clone(),
        }
    }
}

/// A position in the span-keeping document, for [`Validator::locate`].
#[derive(Clone, Copy)]
enum Node<'d> {
    Table(&'d toml_edit::Table),
    Inline(&'d toml_edit::InlineTable),
    Tables(&'d toml_edit::ArrayOfTables),
    Array(&'d toml_edit::Array),
    Leaf,
}

impl<'d> Node<'d> {
    fn of_item(item: &'d toml_edit::Item) -> Node<'d> {
        match item {
            toml_edit::Item::Table(t) => Node::Table(t),
            toml_edit::Item::ArrayOfTables(a) => Node::Tables(a),
            toml_edit::Item::Value(v) => Node::of_value(v),
            toml_edit::Item::None => Node::Leaf,
        }
    }

    fn of_value(value: &'d toml_edit::Value) -> Node<'d> {
        match value {
            toml_edit::Value::InlineTable(t) => Node::Inline(t),
            toml_edit::Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
}

/// `true` for `localhost` and loopback IP literals.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Parses `123`, `"64KiB"`, `"10MiB"`, `"1MB"`, `"1GiB"`.
fn parse_size(v: &toml::Value) -> Option<usize> {
    match v {
        toml::Value::Integer(n) => usize::try_from(*n).ok(),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num.parse().ok()?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kb" => 1000,
                "kib" | "k" => 1024,
                "mb" => 1000 * 1000,
                "mib" | "m" => 1024 * 1024,
                "gb" => 1000 * 1000 * 1000,
                "gib" | "g" => 1024 * 1024 * 1024,
                _ => return None,
            };
            n.checked_mul(mult)
        }
        _ => None,
    }
}
