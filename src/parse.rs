//! Bytes -> [`Inbound`]: the facts about one message that the rest of the pipeline needs.
//!
//! No I/O, and no failure: every input, however hostile, gives an `Inbound`. When mail-parser
//! cannot make sense of the bytes at all, [`parse`] still returns one built from the raw text
//! with `malformed` set, and classification goes on from there.
//!
//! Everything here is *decoded but untrusted*: strings may hold control characters, CR/LF,
//! bidi overrides or megabytes of text. The only place they are made safe for a header is
//! [`crate::reply`]; the only place they are made safe for a terminal is the CLI output.
//! Text kept for classification is capped at [`MAX_TEXT`] bytes, so one huge message cannot
//! cost more than a few milliseconds.

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders, PartType};

/// Text (plain or HTML-derived) kept for classification, per message.
pub const MAX_TEXT: usize = 64 * 1024;

/// Message-ids kept from `References` (the newest ones; a thread can be long).
const MAX_REFERENCES: usize = 32;

/// One parsed message.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    /// Size of the raw message in bytes.
    pub size: usize,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// First `From` mailbox.
    pub from: Option<Mailbox>,
    /// `Sender` address.
    pub sender: Option<String>,
    /// `Return-Path` as delivered by the last MTA.
    pub return_path: ReturnPath,
    /// `Reply-To` addresses.
    pub reply_to: Vec<String>,
    /// Decoded subject, empty when absent.
    pub subject: String,
    /// `Date` as Unix seconds.
    pub date: Option<i64>,
    /// `In-Reply-To` ids, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// `References` ids, without angle brackets, newest last.
    pub references: Vec<String>,
    /// Headers that mark mail as automated.
    pub auto: AutoHeaders,
    /// Plain-text body (text/plain parts that are not attachments), capped at [`MAX_TEXT`].
    pub text: String,
    /// Text derived from the HTML body when there is no plain text, capped at [`MAX_TEXT`].
    pub html_text: String,
    /// Whether any text/html body exists.
    pub has_html: bool,
    /// Whether a text/plain body exists (even if empty).
    pub has_plain: bool,
    /// Attachments (not the text bodies, not signatures).
    pub attachments: Vec<Attachment>,
    /// Encryption found anywhere in the MIME tree.
    pub encryption: Option<Encryption>,
    /// A PGP or S/MIME signature was found.
    pub signed: bool,
    /// An attachment holds encrypted data (an `.asc`/`.pgp` PGP message, Outlook's
    /// `GpgOL_MIME_structure.mime`), whatever the text says.
    pub encrypted_attachment: bool,
    /// The MIME report kind, when the message is a `multipart/report` or holds a status part.
    pub report: Option<ReportKind>,
    /// Number of MIME parts (all levels).
    pub parts: usize,
    /// mail-parser could not parse the message; fields come from a best-effort scan.
    pub malformed: bool,
}

/// A display name and address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, decoded, untrusted.
    pub name: Option<String>,
    /// The address as written, untrusted.
    pub address: String,
}

/// The `Return-Path` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReturnPath {
    /// No `Return-Path` header (e.g. a file never delivered by an MTA).
    #[default]
    Absent,
    /// `Return-Path: <>`: the null sender of bounces and auto-replies.
    Null,
    /// An address.
    Address(String),
}

/// Header values that mark automated mail, as found (trimmed, lowercase).
#[derive(Debug, Clone, Default)]
pub struct AutoHeaders {
    /// Our own loop header (`X-Secintake-Loop`).
    pub secintake_loop: Option<String>,
    /// `Auto-Submitted`.
    pub auto_submitted: Option<String>,
    /// `X-Autoreply`, `X-Autorespond`, `X-Autoresponder` or `X-Auto-Reply`: the first found.
    pub x_autoreply: Option<String>,
    /// `Precedence`.
    pub precedence: Option<String>,
    /// The first `List-*` (or `Mailing-List`, `X-Mailing-List`) header name found.
    pub list_header: Option<String>,
    /// `X-Spam-Flag`.
    pub x_spam_flag: Option<String>,
    /// `X-Spam-Status` (first 40 characters).
    pub x_spam_status: Option<String>,
    /// `X-Spam` (or `X-Spam-Verdict`).
    pub x_spam: Option<String>,
    /// `X-Failed-Recipients` present.
    pub failed_recipients: bool,
}

/// What kind of MIME report the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// RFC 3464 delivery status (a bounce or delay notice).
    DeliveryStatus,
    /// RFC 8098 message disposition notification (read receipt).
    Disposition,
    /// RFC 5965 abuse feedback report.
    Feedback,
    /// Some other `multipart/report`.
    Other,
}

/// How a message is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// RFC 3156 `multipart/encrypted` or `application/pgp-encrypted`.
    PgpMime,
    /// S/MIME `application/pkcs7-mime` enveloped data.
    Smime,
    /// An inline `-----BEGIN PGP MESSAGE-----` block.
    InlinePgp,
}

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name as given, untrusted (may hold anything).
    pub name: Option<String>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// What the attachment is, for the format rules.
    pub kind: AttachmentKind,
    /// Shown inside the body (an HTML image with a Content-ID), not attached as a file.
    pub inline: bool,
}

/// Coarse attachment kinds, for the format rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    /// image/*
    Image,
    /// video/*
    Video,
    /// PDF
    Pdf,
    /// Word processor, spreadsheet or presentation documents.
    Office,
    /// Plain text, code, logs, patches: readable.
    Text,
    /// A forwarded message.
    Message,
    /// Anything else (archives, binaries).
    Other,
}

impl AttachmentKind {
    /// Whether a report sent only as this kind of attachment must be resubmitted as text.
    pub fn is_document(self) -> bool {
        matches!(
            self,
            AttachmentKind::Image | AttachmentKind::Video | AttachmentKind::Pdf | AttachmentKind::Office
        )
    }
}

impl Inbound {
    /// The address automatic replies go to (RFC 3834 §4: the return path, else the sender,
    /// else From). `None` when the message has the null return path or no usable address.
    pub fn reply_address(&self) -> Option<&str> {
        match &self.return_path {
            ReturnPath::Null => None,
            ReturnPath::Address(a) => Some(a.as_str()),
            ReturnPath::Absent => self
                .sender
                .as_deref()
                .or(self.from.as_ref().map(|m| m.address.as_str())),
        }
    }

    /// The text the topic rules read: the plain body, or the HTML-derived text if none.
    pub fn body(&self) -> &str {
        if self.text.trim().is_empty() {
            &self.html_text
        } else {
            &self.text
        }
    }
}

fn parser() -> MessageParser {
    MessageParser::new()
        .with_minimal_headers()
        .with_message_ids()
        .header_address(HeaderName::Sender)
}

/// Parses a raw message. Never panics, never fails.
pub fn parse(raw: &[u8]) -> Inbound {
    // Classic Mac line endings (bare CR, no LF anywhere): mail-parser needs LF.
    let unix;
    let bytes = if !raw.contains(&b'\n') && raw.contains(&b'\r') {
        unix = raw
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect::<Vec<u8>>();
        unix.as_slice()
    } else {
        raw
    };
    let bytes = skip_preamble(bytes);
    // mail-parser is robust, but it has panicked on a real message (an inconsistent part
    // tree in a corpus file). Hostile input must never take the daemon down: contain it,
    // and fall back to the raw-text view.
    let parsed = std::panic::catch_unwind(|| parser().parse(bytes).map(|m| inbound(&m, raw.len())));
    match parsed {
        Ok(Some(inb)) => inb,
        Ok(None) => fallback(raw),
        Err(_) => {
            tracing::warn!(size = raw.len(), "mail-parser panicked; using the raw text");
            fallback(raw)
        }
    }
}

fn inbound(msg: &mail_parser::Message<'_>, size: usize) -> Inbound {
    let mut inb = Inbound {
        size,
        parts: msg.parts.len(),
        ..Inbound::default()
    };
    inb.message_id = msg.message_id().map(clean_id).filter(|s| !s.is_empty());
    inb.from = msg.from().and_then(first_mailbox);
    inb.sender = msg.sender().and_then(first_mailbox).map(|m| m.address);
    inb.reply_to = msg
        .reply_to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address.as_deref().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    inb.subject = msg.subject().unwrap_or("").to_string();
    inb.date = msg.date().map(|d| d.to_timestamp());
    inb.in_reply_to = ids(msg.in_reply_to());
    let mut refs = ids(msg.references());
    if refs.len() > MAX_REFERENCES {
        refs.drain(..refs.len() - MAX_REFERENCES);
    }
    inb.references = refs;
    inb.return_path = return_path(msg.header_raw("Return-Path"));
    read_auto_headers(msg, &mut inb.auto);

    // MIME structure.
    let mut encryption = None;
    let mut signed = false;
    let mut report = None;
    for (i, part) in msg.parts.iter().enumerate() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("multipart", "encrypted") | ("application", "pgp-encrypted") => encryption = Some(Encryption::PgpMime),
            ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
                let smime = ct.attribute("smime-type").unwrap_or("").to_ascii_lowercase();
                if smime.contains("signed") {
                    signed = true;
                } else {
                    encryption = Some(Encryption::Smime);
                }
            }
            ("multipart", "signed") | ("application", "pgp-signature" | "pkcs7-signature" | "x-pkcs7-signature") => {
                signed = true
            }
            ("multipart", "report") if i == 0 => {
                let kind = ct.attribute("report-type").unwrap_or("").to_ascii_lowercase();
                report = Some(match kind.as_str() {
                    "delivery-status" | "global-delivery-status" => ReportKind::DeliveryStatus,
                    "disposition-notification" => ReportKind::Disposition,
                    "feedback-report" => ReportKind::Feedback,
                    _ => ReportKind::Other,
                });
            }
            ("message", "delivery-status" | "global-delivery-status") => {
                if matches!(report, None | Some(ReportKind::Other)) {
                    report = Some(ReportKind::DeliveryStatus);
                }
            }
            ("message", "feedback-report") if report.is_none() => report = Some(ReportKind::Feedback),
            ("message", "disposition-notification") if report.is_none() => report = Some(ReportKind::Disposition),
            _ => {}
        }
    }
    if encryption.is_none() {
        encryption = nested_encryption(msg, 0);
    }
    inb.signed = signed;
    inb.report = report;

    // Bodies: only parts of the top-level message (not of an attached message).
    for id in &msg.text_body {
        let Some(part) = msg.parts.get(*id as usize) else {
            continue;
        };
        match &part.body {
            PartType::Text(t) if is_plain(part) => {
                inb.has_plain = true;
                push_capped(&mut inb.text, t);
            }
            PartType::Html(_) => inb.has_html = true,
            _ => {}
        }
    }
    for id in &msg.html_body {
        let Some(part) = msg.parts.get(*id as usize) else {
            continue;
        };
        if let PartType::Html(_) = part.body {
            inb.has_html = true;
        }
    }
    if inb.text.trim().is_empty() && inb.has_html {
        // mail-parser renders HTML to text for body_text() when there is no plain part.
        if let Some(t) = msg.body_text(0) {
            push_capped(&mut inb.html_text, &t);
        }
    }
    for id in &msg.attachments {
        let Some(part) = msg.parts.get(*id as usize) else {
            continue;
        };
        let (ctype, sub) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("application".into(), "octet-stream".into()));
        let content_type = format!("{ctype}/{sub}");
        if matches!(
            content_type.as_str(),
            "application/pgp-signature"
                | "application/pkcs7-signature"
                | "application/x-pkcs7-signature"
                | "application/pgp-encrypted"
        ) {
            continue;
        }
        let name = part.attachment_name().map(str::to_string);
        if looks_encrypted(name.as_deref(), part.contents()) {
            inb.encrypted_attachment = true;
        }
        let kind = attachment_kind(&ctype, &sub, name.as_deref(), &part.body);
        let size = part.contents().len();
        if kind == AttachmentKind::Text && inb.text.len() < MAX_TEXT {
            // A text attachment (PoC, log) is part of what the reporter told us.
            if let PartType::Text(t) = &part.body {
                push_capped(&mut inb.text, "\n");
                push_capped(&mut inb.text, t);
            }
        }
        let inline = part.content_id().is_some() && part.content_disposition().is_none_or(|d| !d.is_attachment());
        inb.attachments.push(Attachment {
            name,
            content_type,
            size,
            kind,
            inline,
        });
    }
    if inb.body().contains("-----BEGIN PGP MESSAGE-----") && encryption.is_none() {
        encryption = Some(Encryption::InlinePgp);
    }
    if inb.text.contains("-----BEGIN PGP SIGNED MESSAGE-----") {
        inb.signed = true;
    }
    inb.encryption = encryption;
    inb
}

/// Skips what comes before the header block in files saved by hand or cut from an mbox:
/// blank lines and a leading mbox `From ` separator line.
fn skip_preamble(mut raw: &[u8]) -> &[u8] {
    loop {
        let line_end = raw.iter().position(|&b| b == b'\n').map(|p| p + 1).unwrap_or(raw.len());
        let line = raw.get(..line_end).unwrap_or(raw);
        let blank = line.iter().all(|b| b.is_ascii_whitespace());
        if line_end < raw.len() && (blank || line.starts_with(b"From ")) {
            raw = raw.get(line_end..).unwrap_or(&[]);
        } else {
            return raw;
        }
    }
}

/// Encryption inside attached messages (a forwarded encrypted mail), a few levels deep.
fn nested_encryption(msg: &mail_parser::Message<'_>, depth: usize) -> Option<Encryption> {
    if depth >= 3 {
        return None;
    }
    for part in &msg.parts {
        if let PartType::Message(inner) = &part.body {
            for p in &inner.parts {
                let Some(ct) = p.content_type() else { continue };
                let (t, sub) = (ct.ctype(), ct.subtype().unwrap_or(""));
                if t.eq_ignore_ascii_case("multipart") && sub.eq_ignore_ascii_case("encrypted") {
                    return Some(Encryption::PgpMime);
                }
                if t.eq_ignore_ascii_case("application")
                    && (sub.eq_ignore_ascii_case("pkcs7-mime") || sub.eq_ignore_ascii_case("x-pkcs7-mime"))
                    && !ct
                        .attribute("smime-type")
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains("signed")
                {
                    return Some(Encryption::Smime);
                }
            }
            if let Some(e) = nested_encryption(inner, depth + 1) {
                return Some(e);
            }
        }
    }
    None
}

/// Whether an attachment is encrypted data rather than something a person can read.
fn looks_encrypted(name: Option<&str>, contents: &[u8]) -> bool {
    let name = name.unwrap_or("").to_ascii_lowercase();
    if name == "gpgol_mime_structure.mime" || name.ends_with(".pgp") || name.ends_with(".gpg") {
        return true;
    }
    let head = contents.get(..contents.len().min(512)).unwrap_or(contents);
    let needle = b"-----BEGIN PGP MESSAGE-----";
    head.windows(needle.len()).any(|w| w == needle) || head.starts_with(b"Content-Type: multipart/encrypted")
}

/// A text/plain (or untyped) part that is a body, not an attachment.
fn is_plain(part: &mail_parser::MessagePart<'_>) -> bool {
    match part.content_type() {
        None => true,
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case("text") && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
        }
    }
}

fn attachment_kind(ctype: &str, sub: &str, name: Option<&str>, body: &PartType<'_>) -> AttachmentKind {
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match (ctype, sub, ext.as_str()) {
        ("image", _, _) => AttachmentKind::Image,
        ("video", _, _) => AttachmentKind::Video,
        (_, "pdf", _) | (_, _, "pdf") => AttachmentKind::Pdf,
        ("message", _, _) => AttachmentKind::Message,
        (_, _, "doc" | "docx" | "odt" | "rtf" | "xls" | "xlsx" | "ods" | "ppt" | "pptx" | "odp" | "pages" | "key") => {
            AttachmentKind::Office
        }
        (_, s, _)
            if s.starts_with("msword")
                || s.starts_with("vnd.openxmlformats")
                || s.starts_with("vnd.ms-")
                || s.starts_with("vnd.oasis.opendocument")
                || s == "rtf" =>
        {
            AttachmentKind::Office
        }
        (_, _, "png" | "jpg" | "jpeg" | "gif" | "bmp" | "webp" | "heic" | "tif" | "tiff") => AttachmentKind::Image,
        (_, _, "mp4" | "mov" | "avi" | "mkv" | "webm" | "wmv") => AttachmentKind::Video,
        _ if matches!(body, PartType::Text(_)) => AttachmentKind::Text,
        _ => AttachmentKind::Other,
    }
}

fn push_capped(buf: &mut String, s: &str) {
    let room = MAX_TEXT.saturating_sub(buf.len());
    if room == 0 {
        return;
    }
    if s.len() <= room {
        buf.push_str(s);
    } else {
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        buf.push_str(s.get(..end).unwrap_or(""));
    }
}

fn first_mailbox(a: &Address<'_>) -> Option<Mailbox> {
    let addr = a.first()?;
    let address = addr.address.as_deref()?.trim().to_string();
    if address.is_empty() {
        return None;
    }
    Some(Mailbox {
        name: addr
            .name
            .as_deref()
            .map(str::to_string)
            .filter(|n| !n.trim().is_empty()),
        address,
    })
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

fn return_path(raw: Option<&str>) -> ReturnPath {
    let Some(raw) = raw else {
        return ReturnPath::Absent;
    };
    let v = raw.trim().trim_start_matches('<').trim_end_matches('>').trim();
    if v.is_empty() {
        ReturnPath::Null
    } else {
        ReturnPath::Address(v.to_string())
    }
}

fn read_auto_headers(msg: &mail_parser::Message<'_>, auto: &mut AutoHeaders) {
    for (name, value) in msg.headers_raw() {
        let lname = name.to_ascii_lowercase();
        let value = || {
            let v = value.trim();
            let mut end = v.len().min(80);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.get(..end).unwrap_or("").to_ascii_lowercase()
        };
        let slot = match lname.as_str() {
            "x-secintake-loop" => &mut auto.secintake_loop,
            "auto-submitted" => &mut auto.auto_submitted,
            "x-autoreply" | "x-autorespond" | "x-autoresponder" | "x-auto-reply" => &mut auto.x_autoreply,
            "precedence" | "x-precedence" => &mut auto.precedence,
            "x-spam-flag" => &mut auto.x_spam_flag,
            "x-spam-status" => &mut auto.x_spam_status,
            "x-spam" | "x-spam-verdict" => &mut auto.x_spam,
            "x-failed-recipients" => {
                auto.failed_recipients = true;
                continue;
            }
            n if n.starts_with("list-")
                || matches!(
                    n,
                    "mailing-list" | "x-mailing-list" | "x-mlserver" | "x-ml-name" | "x-loop-detect"
                ) =>
            {
                if auto.list_header.is_none() {
                    auto.list_header = Some(name.to_string());
                }
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value());
        }
    }
}

/// Best effort for input mail-parser rejects (empty input, no header block): keep the text.
fn fallback(raw: &[u8]) -> Inbound {
    let text = String::from_utf8_lossy(raw);
    let mut inb = Inbound {
        size: raw.len(),
        malformed: true,
        has_plain: !text.trim().is_empty(),
        ..Inbound::default()
    };
    push_capped(&mut inb.text, &text);
    inb
}
