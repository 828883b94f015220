//! Verdict + case -> outgoing messages, rendered from templates. No I/O, no failure.
//!
//! Every automatic reply follows RFC 3834: it goes to the return path (else Sender, else
//! From), carries `Auto-Submitted: auto-replied`, `In-Reply-To` and `References`, leaves
//! with the null envelope sender, and never quotes the body (the sender may be forged, and
//! we must not become a reflector). Forwards to a team carry the original as
//! `message/rfc822`, with `Reply-To` set to the reporter and the security address.
//!
//! Headers are built from typed values: addresses are parsed into `lettre::Address`,
//! message-ids are checked against the RFC 5322 `msg-id` shape, and free text (subjects,
//! names) goes through [`header_text`], which drops control characters, line breaks and
//! bidi overrides before lettre encodes it. A string that fails its check is left out.
//!
//! Templates are minijinja text files, embedded in the binary and overridable from a
//! folder. They are compiled and test-rendered when the config loads, so a broken template
//! is a config error, not a failed reply; if an override still fails at run time the
//! embedded default is used.

use std::path::Path;
use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use serde::Serialize;

use crate::classify::{Reason, Signal, Verdict, excerpt, route::KeywordHit};
use crate::config::{Config, Project};
use crate::parse::Inbound;

/// Our loop-detection header: mail carrying it came from us.
pub const LOOP_HEADER: &str = "X-Secintake-Loop";

/// The kinds of mail we send. Each has a template of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// Acknowledgement of a new case to the reporter.
    Ack,
    /// A new case to the project's team.
    Forward,
    /// A follow-up message to the case's team.
    Followup,
    /// Format rejections.
    RejectHtmlOnly,
    /// See [`Reason::AttachmentOnly`].
    RejectAttachmentOnly,
    /// See [`Reason::Encrypted`].
    RejectEncrypted,
    /// See [`Reason::TooLarge`].
    RejectTooLarge,
    /// Off-topic rejections.
    RejectBugReport,
    /// See [`Reason::Question`].
    RejectQuestion,
    /// See [`Reason::ScannerOutput`].
    RejectScannerOutput,
}

impl ReplyKind {
    /// All kinds (one template each).
    pub const ALL: [ReplyKind; 10] = [
        ReplyKind::Ack,
        ReplyKind::Forward,
        ReplyKind::Followup,
        ReplyKind::RejectHtmlOnly,
        ReplyKind::RejectAttachmentOnly,
        ReplyKind::RejectEncrypted,
        ReplyKind::RejectTooLarge,
        ReplyKind::RejectBugReport,
        ReplyKind::RejectQuestion,
        ReplyKind::RejectScannerOutput,
    ];

    /// The contract word (also the template name without `.txt`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Ack => "ack",
            ReplyKind::Forward => "forward",
            ReplyKind::Followup => "followup",
            ReplyKind::RejectHtmlOnly => "reject_html_only",
            ReplyKind::RejectAttachmentOnly => "reject_attachment_only",
            ReplyKind::RejectEncrypted => "reject_encrypted",
            ReplyKind::RejectTooLarge => "reject_too_large",
            ReplyKind::RejectBugReport => "reject_bug_report",
            ReplyKind::RejectQuestion => "reject_question",
            ReplyKind::RejectScannerOutput => "reject_scanner_output",
        }
    }

    /// Whether this is an RFC 3834 automatic reply to the sender.
    pub fn is_auto_reply(self) -> bool {
        !matches!(self, ReplyKind::Forward | ReplyKind::Followup)
    }

    /// The rejection reply for a reject reason.
    pub fn for_reason(reason: Reason) -> Option<ReplyKind> {
        Some(match reason {
            Reason::HtmlOnly => ReplyKind::RejectHtmlOnly,
            Reason::AttachmentOnly => ReplyKind::RejectAttachmentOnly,
            Reason::Encrypted => ReplyKind::RejectEncrypted,
            Reason::TooLarge => ReplyKind::RejectTooLarge,
            Reason::BugReport => ReplyKind::RejectBugReport,
            Reason::Question => ReplyKind::RejectQuestion,
            Reason::ScannerOutput => ReplyKind::RejectScannerOutput,
            _ => return None,
        })
    }

    fn default_source(self) -> &'static str {
        match self {
            ReplyKind::Ack => include_str!("../config/templates/ack.txt"),
            ReplyKind::Forward => include_str!("../config/templates/forward.txt"),
            ReplyKind::Followup => include_str!("../config/templates/followup.txt"),
            ReplyKind::RejectHtmlOnly => include_str!("../config/templates/reject_html_only.txt"),
            ReplyKind::RejectAttachmentOnly => {
                include_str!("../config/templates/reject_attachment_only.txt")
            }
            ReplyKind::RejectEncrypted => include_str!("../config/templates/reject_encrypted.txt"),
            ReplyKind::RejectTooLarge => include_str!("../config/templates/reject_too_large.txt"),
            ReplyKind::RejectBugReport => include_str!("../config/templates/reject_bug_report.txt"),
            ReplyKind::RejectQuestion => include_str!("../config/templates/reject_question.txt"),
            ReplyKind::RejectScannerOutput => {
                include_str!("../config/templates/reject_scanner_output.txt")
            }
        }
    }
}

/// The compiled templates: the configured ones, and the embedded defaults as fallback.
pub struct Templates {
    env: minijinja::Environment<'static>,
    defaults: minijinja::Environment<'static>,
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
}

impl Templates {
    /// The embedded templates only.
    pub fn embedded() -> Templates {
        let mut defaults = environment();
        for kind in ReplyKind::ALL {
            defaults
                .add_template(kind.as_str(), kind.default_source())
                .expect("embedded templates compile (tested)");
        }
        Templates {
            env: defaults.clone(),
            defaults,
        }
    }

    /// The embedded templates, overridden by `<dir>/<kind>.txt` where such a file exists.
    /// Every template is compiled and rendered with a sample context; the errors name the
    /// file and line.
    pub fn load(dir: Option<&Path>) -> Result<Templates, Vec<String>> {
        let mut t = Templates::embedded();
        let mut errors = Vec::new();
        let mut broken = Vec::new();
        if let Some(dir) = dir {
            for kind in ReplyKind::ALL {
                let path = dir.join(format!("{}.txt", kind.as_str()));
                match std::fs::read_to_string(&path) {
                    Ok(src) => {
                        if let Err(e) = t.env.add_template_owned(kind.as_str(), src) {
                            errors.push(format!("{}: {}", path.display(), describe(&e)));
                            broken.push(kind);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
        for kind in ReplyKind::ALL.into_iter().filter(|k| !broken.contains(k)) {
            let ctx = Context::sample();
            if let Err(e) = t.env.get_template(kind.as_str()).and_then(|tpl| tpl.render(&ctx)) {
                errors.push(format!("template {}.txt: {}", kind.as_str(), describe(&e)));
            } else if let Ok(out) = t.env.get_template(kind.as_str()).and_then(|tpl| tpl.render(&ctx))
                && split_subject(&out).is_none()
            {
                errors.push(format!(
                    "template {}.txt: must start with a \"Subject: ...\" line and a blank line",
                    kind.as_str()
                ));
            }
        }
        if errors.is_empty() { Ok(t) } else { Err(errors) }
    }

    /// Renders `kind` to `(subject, body)`, falling back to the embedded template.
    fn render(&self, kind: ReplyKind, ctx: &Context<'_>) -> (String, String) {
        let render = |env: &minijinja::Environment<'static>| {
            env.get_template(kind.as_str())
                .and_then(|t| t.render(ctx))
                .ok()
                .and_then(|out| split_subject(&out))
        };
        render(&self.env)
            .or_else(|| render(&self.defaults))
            .unwrap_or_else(|| (kind.as_str().to_string(), String::new()))
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

fn split_subject(rendered: &str) -> Option<(String, String)> {
    let rest = rendered.strip_prefix("Subject:")?;
    let (subject, body) = rest.split_once('\n')?;
    let body = body.strip_prefix('\n').or_else(|| body.strip_prefix("\r\n"))?;
    Some((subject.trim().to_string(), body.to_string()))
}

/// What templates can use. Every string here is already single-line and control-free where
/// it came from the sender.
#[derive(Serialize)]
struct Context<'a> {
    case_id: &'a str,
    subject: String,
    reporter: String,
    reporter_name: String,
    received: String,
    project: Option<ProjectCtx<'a>>,
    security_model_url: Option<&'a str>,
    security_address: String,
    keywords: &'a [KeywordHit],
    attachments: Vec<AttachmentCtx>,
    signals: Vec<Signal>,
    appeal: bool,
    reason: &'a str,
    size: usize,
    max_size: usize,
}

#[derive(Serialize)]
struct ProjectCtx<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct AttachmentCtx {
    name: String,
    content_type: String,
    size: usize,
}

impl Context<'static> {
    fn sample() -> Context<'static> {
        Context {
            case_id: "SEC-2026-0001",
            subject: "sample subject".into(),
            reporter: "reporter@example.com".into(),
            reporter_name: "Reporter".into(),
            received: "2026-01-01T00:00:00Z".into(),
            project: Some(ProjectCtx {
                id: "sample",
                name: "Sample",
            }),
            security_model_url: Some("https://example.org/security-model"),
            security_address: "security@example.org".into(),
            keywords: &[],
            attachments: vec![AttachmentCtx {
                name: "poc.txt".into(),
                content_type: "text/plain".into(),
                size: 10,
            }],
            signals: Vec::new(),
            appeal: false,
            reason: "html_only",
            size: 2,
            max_size: 1,
        }
    }
}

/// A rendered outgoing message, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// What it is.
    pub kind: ReplyKind,
    /// Envelope sender; `None` is the null sender (`MAIL FROM:<>`).
    pub envelope_from: Option<Address>,
    /// Envelope recipients.
    pub recipients: Vec<Address>,
    /// Our Message-ID, without brackets.
    pub message_id: String,
    /// The formatted message, without the original when `original_at` is set.
    pub bytes: Vec<u8>,
    /// Where in `bytes` the original message goes, as [`crlf`] of the stored raw bytes.
    ///
    /// A forward carries the whole original, and the original is already in the store, so the
    /// outbox keeps only this offset and [`splice_original`] puts it back at send time: the
    /// writer then stores each message's bytes once, not twice.
    pub original_at: Option<usize>,
}

/// The case a reply is about.
pub struct CaseRef<'a> {
    /// Case id.
    pub id: &'a str,
    /// Routed project (from config), if any.
    pub project: Option<&'a Project>,
    /// Opened on appeal.
    pub appeal: bool,
}

/// Builds outgoing messages for one config.
pub struct Composer<'c> {
    config: &'c Config,
    templates: &'c Templates,
}

impl<'c> Composer<'c> {
    /// A composer over a config and its templates.
    pub fn new(config: &'c Config, templates: &'c Templates) -> Composer<'c> {
        Composer { config, templates }
    }

    fn context<'a>(
        &'a self,
        msg: &Inbound,
        verdict: &'a Verdict,
        case: Option<&'a CaseRef<'a>>,
        now: SystemTime,
    ) -> Context<'a> {
        let project = case.and_then(|c| c.project);
        Context {
            case_id: case.map(|c| c.id).unwrap_or(""),
            subject: {
                let s = header_text(&msg.subject, 160);
                if s.is_empty() { "(no subject)".into() } else { s }
            },
            reporter: msg
                .from
                .as_ref()
                .map(|f| header_text(&f.address, 200))
                .unwrap_or_else(|| "(unknown)".into()),
            reporter_name: msg
                .from
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .map(|n| header_text(n, 80))
                .unwrap_or_default(),
            received: rfc3339(now),
            project: project.map(|p| ProjectCtx {
                id: &p.id,
                name: &p.name,
            }),
            security_model_url: project.and_then(|p| p.security_model_url.as_deref()).or(self
                .config
                .triage
                .security_model_url
                .as_deref()),
            security_address: self.config.security_address().to_string(),
            keywords: &verdict.keywords,
            attachments: msg
                .attachments
                .iter()
                .map(|a| AttachmentCtx {
                    name: a
                        .name
                        .as_deref()
                        .map(|n| header_text(n, 100))
                        .unwrap_or_else(|| "(unnamed)".into()),
                    content_type: header_text(&a.content_type, 80),
                    size: a.size,
                })
                .collect(),
            signals: verdict
                .signals
                .iter()
                .filter(|s| s.weight > 0)
                .take(8)
                .cloned()
                .collect(),
            appeal: case.is_some_and(|c| c.appeal),
            reason: verdict.reason.map(|r| r.as_str()).unwrap_or(""),
            size: msg.size,
            max_size: self.config.triage.max_message_size,
        }
    }

    /// An RFC 3834 automatic reply (ack or rejection) to the sender, or `None` when the
    /// message has no usable reply address.
    pub fn auto_reply(
        &self,
        kind: ReplyKind,
        msg: &Inbound,
        verdict: &Verdict,
        case: Option<&CaseRef<'_>>,
        now: SystemTime,
    ) -> Option<Outgoing> {
        // ASCII only: a UTF-8 address needs SMTPUTF8 end to end, and a mangled one (a bad byte
        // decoded to U+FFFD) is not the sender's address at all.
        let to: Address = msg
            .reply_address()
            .map(str::trim)
            .filter(|a| a.is_ascii())?
            .parse()
            .ok()?;
        let ctx = self.context(msg, verdict, case, now);
        let (subject, body) = self.templates.render(kind, &ctx);
        let message_id = self.new_message_id();
        let mut b = self
            .base(&subject, &message_id, now)
            .to(Mailbox::new(None, to.clone()))
            .header(AutoSubmitted("auto-replied".into()));
        if let Some(id) = msg.message_id.as_deref().filter(|id| valid_msg_id(id)) {
            b = b.in_reply_to(format!("<{id}>"));
        }
        if let Some(refs) = references(msg) {
            b = b.references(refs);
        }
        let message = b.singlepart(SinglePart::plain(body)).ok()?;
        Some(Outgoing {
            kind,
            envelope_from: None,
            recipients: vec![to],
            message_id,
            bytes: message.formatted(),
            original_at: None,
        })
    }

    /// The forward of a new case (or of a follow-up) to a team, with the original attached.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        kind: ReplyKind,
        raw: &[u8],
        msg: &Inbound,
        verdict: &Verdict,
        case: &CaseRef<'_>,
        team: &[Address],
        now: SystemTime,
    ) -> Option<Outgoing> {
        let ctx = self.context(msg, verdict, Some(case), now);
        let (subject, body) = self.templates.render(kind, &ctx);
        let message_id = self.new_message_id();
        let mut b = self
            .base(&subject, &message_id, now)
            .header(AutoSubmitted("auto-generated".into()));
        for a in team {
            b = b.to(Mailbox::new(None, a.clone()));
        }
        // Reply-To: the reporter (their Reply-To if they set one) and us, so the team's
        // answer reaches the reporter and comes back to the case.
        let reporter = msg
            .reply_to
            .first()
            .map(String::as_str)
            .or(msg.from.as_ref().map(|f| f.address.as_str()))
            .map(str::trim)
            .filter(|a| a.is_ascii())
            .and_then(|a| a.parse::<Address>().ok());
        if let Some(r) = reporter {
            b = b.reply_to(Mailbox::new(None, r));
        }
        b = b.reply_to(Mailbox::new(None, self.config.security_address().clone()));
        if let Some(id) = msg.message_id.as_deref().filter(|id| valid_msg_id(id)) {
            b = b.references(format!("<{id}>"));
        }
        // A random placeholder where the original goes (unguessable, so a reporter cannot
        // plant it in the rendered summary); it is cut out again after formatting.
        let placeholder = format!(
            "secintake-original-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let original = match rfc822_encoding(raw) {
            Some(encoding) => Body::dangerous_pre_encoded(placeholder.clone().into_bytes(), encoding),
            None => Body::new_with_encoding(crlf(raw), ContentTransferEncoding::Base64).unwrap_or_else(Body::new),
        };
        let attachment = Attachment::new("original-message.eml".into()).body(
            original,
            ContentType::parse("message/rfc822").expect("static content type"),
        );
        let message = b
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(attachment),
            )
            .ok()?;
        let mut bytes = message.formatted();
        let original_at = memchr::memmem::rfind(&bytes, placeholder.as_bytes());
        if let Some(at) = original_at {
            bytes.drain(at..at + placeholder.len());
        }
        Some(Outgoing {
            kind,
            envelope_from: Some(self.config.security_address().clone()),
            recipients: team.to_vec(),
            message_id,
            bytes,
            original_at,
        })
    }

    fn base(&self, subject: &str, message_id: &str, now: SystemTime) -> lettre::message::MessageBuilder {
        Message::builder()
            .from(self.config.smtp.from.clone())
            .subject(header_text(subject, 200))
            .message_id(Some(format!("<{message_id}>")))
            .date(now)
            .header(LoopHeader(self.config.security_address().to_string()))
            .header(AutoResponseSuppress("All".into()))
    }

    fn new_message_id(&self) -> String {
        format!(
            "secintake.{:016x}{:08x}@{}",
            fastrand::u64(..),
            fastrand::u32(..),
            self.config.security_address().domain()
        )
    }
}

/// The transfer encoding of `raw` as the body of a `message/rfc822` part, or `None` when it
/// cannot go unchanged. RFC 2046 §5.2.1 allows only 7bit, 8bit or binary there, and lettre's
/// own encoder picks base64 for any line over 76 characters, so the check is done here: CRLF
/// lines of at most 998 bytes without NUL or bare CR go out as 7bit/8bit unchanged (after
/// [`crlf`]); anything else (rare, and broken already) is sent base64.
fn rfc822_encoding(raw: &[u8]) -> Option<ContentTransferEncoding> {
    // The same test as "every line, less one trailing CR, is at most 998 bytes without NUL or
    // CR", done with memchr: this runs over every reported message's raw bytes.
    let no_nul = memchr::memchr(0, raw).is_none();
    let no_bare_cr = memchr::memchr_iter(b'\r', raw).all(|i| matches!(raw.get(i + 1), Some(b'\n') | None));
    let mut start = 0;
    let short_lines = memchr::memchr_iter(b'\n', raw).chain([raw.len()]).all(|end| {
        let line = raw.get(start..end).unwrap_or_default();
        start = end + 1;
        line.strip_suffix(b"\r").unwrap_or(line).len() <= 998
    });
    let clean = no_nul && no_bare_cr && short_lines;
    match (clean, raw.is_ascii()) {
        (false, _) => None,
        (true, true) => Some(ContentTransferEncoding::SevenBit),
        (true, false) => Some(ContentTransferEncoding::EightBit),
    }
}

/// A queued message as it goes out: `bytes` with the original put back at `original_at`
/// (see [`Outgoing::original_at`]).
pub fn splice_original(bytes: &[u8], original_at: Option<usize>, raw: &[u8]) -> Vec<u8> {
    let Some((head, tail)) = original_at.and_then(|at| Some((bytes.get(..at)?, bytes.get(at..)?))) else {
        return bytes.to_vec();
    };
    let mut out = Vec::with_capacity(bytes.len() + raw.len() + raw.len() / 32);
    out.extend_from_slice(head);
    crlf_into(raw, &mut out);
    out.extend_from_slice(tail);
    out
}

/// `raw` with every bare LF turned into CRLF.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    crlf_into(raw, &mut out);
    out
}

fn crlf_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut rest = raw;
    // Copy whole lines at a time: most mail is CRLF already.
    while let Some(i) = memchr::memchr(b'\n', rest) {
        let (line, after) = rest.split_at(i);
        out.extend_from_slice(line);
        if line.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b'\n');
        rest = after.get(1..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
}

/// `References` for a reply: the parent's references (valid ones, newest 10) and its id.
fn references(msg: &Inbound) -> Option<String> {
    let mut ids: Vec<&str> = msg
        .references
        .iter()
        .map(String::as_str)
        .filter(|i| valid_msg_id(i))
        .collect();
    if ids.len() > 10 {
        ids.drain(..ids.len() - 10);
    }
    if let Some(id) = msg.message_id.as_deref().filter(|i| valid_msg_id(i)) {
        ids.push(id);
    }
    if ids.is_empty() {
        return None;
    }
    Some(ids.iter().map(|i| format!("<{i}>")).collect::<Vec<_>>().join(" "))
}

/// Whether `id` (without brackets) has the RFC 5322 `msg-id` shape and can go into a header
/// as `<id>`: `dot-atom-text "@" (dot-atom-text / "[" dtext "]")`, at most 250 bytes. Ids
/// that fail (encoded words, spaces, quotes, stray `@`) are left out of replies.
pub fn valid_msg_id(id: &str) -> bool {
    fn atext(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
    }
    fn dot_atom(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.bytes().all(|b| b == b'.' || atext(b))
    }
    fn literal(s: &str) -> bool {
        s.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|d| d.bytes().all(|b| matches!(b, 33..=90 | 94..=126)))
    }
    if id.len() > 250 {
        return false;
    }
    match id.split_once('@') {
        Some((left, right)) => dot_atom(left) && (dot_atom(right) || literal(right)),
        None => false,
    }
}

/// Untrusted text made fit for a header or a one-line field: no control characters, no
/// line breaks, no bidi overrides, whitespace collapsed, at most `max_chars` characters.
pub fn header_text(s: &str, max_chars: usize) -> String {
    excerpt(s, max_chars)
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

macro_rules! text_header {
    ($ty:ident, $name:expr) => {
        #[derive(Debug, Clone)]
        struct $ty(String);

        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($ty(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(AutoSubmitted, "Auto-Submitted");
text_header!(LoopHeader, "X-Secintake-Loop");
text_header!(AutoResponseSuppress, "X-Auto-Response-Suppress");

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition `crlf` had before it copied whole lines.
    fn crlf_reference(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = 0u8;
        for &b in raw {
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            prev = b;
        }
        out
    }

    #[test]
    fn crlf_turns_bare_lf_only() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"\n\n",
            b"\r\n",
            b"a\nb\r\nc",
            b"a\r\r\n\n\r",
            b"no line end",
            b"\r\n\n\r\n\nend\n",
            "8bit \u{e9}\n".as_bytes(),
        ];
        for raw in cases {
            assert_eq!(crlf(raw), crlf_reference(raw), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// The line-by-line definition `rfc822_encoding` replaced.
    fn clean_reference(raw: &[u8]) -> bool {
        raw.split(|&b| b == b'\n').all(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() <= 998 && !line.iter().any(|&b| b == 0 || b == b'\r')
        })
    }

    #[test]
    fn rfc822_encoding_agrees_with_the_line_by_line_test() {
        let long = "x".repeat(998);
        let longer = "x".repeat(999);
        let mut cases: Vec<Vec<u8>> = [
            "",
            "\r",
            "a\r",
            "a\rb",
            "\r\n",
            "a\r\r\n",
            "a\0b",
            "\n\n",
            "caf\u{e9}\r\n",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(format!("{long}\r\n{long}").into_bytes());
        cases.push(format!("{long}\n{longer}").into_bytes());
        cases.push(format!("{longer}\r\n").into_bytes());
        cases.push(format!("{long}\r").into_bytes());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..3000);
            // Mostly text, so that lines and CRs decide; NUL now and then.
            let bytes: &[u8] = if rng.u8(..) == 0 {
                b"ab\r\n\0"
            } else {
                b"abcdefgh \r\n\xe9"
            };
            cases.push((0..len).map(|_| *rng.choice(bytes).unwrap_or(&b'a')).collect());
        }
        for raw in &cases {
            let expected = clean_reference(raw);
            assert_eq!(
                rfc822_encoding(raw).is_some(),
                expected,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn splice_puts_the_original_at_the_offset() {
        let body = b"head\r\n\r\ntail\r\n";
        assert_eq!(
            splice_original(body, Some(8), b"X: 1\n\nhi\n"),
            b"head\r\n\r\nX: 1\r\n\r\nhi\r\ntail\r\n"
        );
        assert_eq!(splice_original(body, None, b"ignored"), body);
        // An offset past the end (a damaged row) leaves the body as it is rather than panic.
        assert_eq!(splice_original(body, Some(999), b"ignored"), body);
    }
}
