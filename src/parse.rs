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
//! cost more than a few milliseconds; for the same reason the middle of a long base64 body is
//! cut out before mail-parser would decode it, and its size put back afterwards (see the end
//! of this file; [`parse_whole`] decodes everything, for the tests that compare the two).

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
    let bytes = prepared(raw);
    let bytes = skip_preamble(&bytes);
    // Cuts that mail-parser's reading does not bear out (see `cuts_hold`) send the message to
    // be parsed again whole.
    elide(bytes)
        .and_then(|e| parse_bytes(raw, &e.bytes, &e.cuts))
        .or_else(|| parse_bytes(raw, bytes, &[]))
        .unwrap_or_else(|| fallback(raw))
}

/// As [`parse`], decoding every base64 body in full. Tests compare the two.
#[doc(hidden)]
pub fn parse_whole(raw: &[u8]) -> Inbound {
    let bytes = prepared(raw);
    parse_bytes(raw, skip_preamble(&bytes), &[]).unwrap_or_else(|| fallback(raw))
}

/// Classic Mac line endings (bare CR, no LF anywhere) made LF: mail-parser needs LF.
fn prepared(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !raw.contains(&b'\n') && raw.contains(&b'\r') {
        raw.iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        raw.into()
    }
}

/// Parses `bytes` (`raw` as prepared, perhaps cut); `None` only when there are cuts and they do
/// not hold, or mail-parser panicked on the cut bytes.
fn parse_bytes(raw: &[u8], bytes: &[u8], cuts: &[Cut]) -> Option<Inbound> {
    // mail-parser is robust, but it has panicked on a real message (an inconsistent part
    // tree in a corpus file). Hostile input must never take the daemon down: contain it,
    // and fall back to the raw-text view.
    let parsed = std::panic::catch_unwind(|| parser().parse(bytes).map(|m| inbound(&m, raw.len(), cuts)));
    match parsed {
        Ok(Some(inb)) => inb,
        Ok(None) => Some(fallback(raw)),
        // A panic on a cut message: try the whole one.
        Err(_) if !cuts.is_empty() => None,
        Err(_) => {
            tracing::warn!(size = raw.len(), "mail-parser panicked; using the raw text");
            Some(fallback(raw))
        }
    }
}

fn inbound(msg: &mail_parser::Message<'_>, size: usize, cuts: &[Cut]) -> Option<Inbound> {
    if !cuts_hold(msg, cuts) {
        return None;
    }
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
        let size = part.contents().len() + cut_from(part, cuts);
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
    Some(inb)
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

// --- Long base64 bodies --------------------------------------------------------------------
//
// Decoding is most of the cost of parsing a big message, and nothing here reads far into a
// binary attachment: only its first bytes and its size matter. So before a message of
// ELIDE_ABOVE bytes or more is parsed, the middle of each long base64 body of a binary type
// (not text, whose length after charset decoding is its size; not an attached message) is cut
// out, whole lines at a time, and the sizes are put back afterwards. What mail-parser returns
// for the cut message is then the same as for the whole one, up to those sizes.
//
// The cutting reads the MIME structure its own quick way; mail-parser's reading decides. A
// cut that does not lie in the body of a binary base64 part of mail-parser's tree, exactly
// where the cutting thought that body began (a boundary that is not one, a pasted MIME part
// inside a text body), or that mail-parser finds broken (it then keeps the body raw, cut
// included), or a panic, sends the message to be parsed again whole. `parse_whole` keeps the
// plain way for the tests that check all this.

/// Messages smaller than this are parsed as they are.
const ELIDE_ABOVE: usize = 128 * 1024;
/// Base64 kept at the start of a binary body: the first bytes tell encrypted data apart.
const KEEP_BINARY: usize = 4 * 1024;

/// A message with base64 lines cut out.
struct Elided {
    bytes: Vec<u8>,
    cuts: Vec<Cut>,
}

/// One run of lines cut out of a base64 body.
struct Cut {
    /// Where, in the cut message.
    at: usize,
    /// Where the body holding the cut begins, in the cut message.
    body: usize,
    /// Bytes the lines decode to.
    decoded: usize,
    /// Bytes of the lines, line ends included.
    raw: usize,
}

/// Bytes of the cut lines inside `part`: as decoded for a binary part, as raw text for an
/// attached message (whose contents are its raw bytes). See [`cuts_hold`].
fn cut_from(part: &mail_parser::MessagePart<'_>, cuts: &[Cut]) -> usize {
    cuts.iter()
        .filter(|c| in_part(part, c))
        .map(|c| match part.body {
            PartType::Message(_) => c.raw,
            _ => c.decoded,
        })
        .sum()
}

fn in_part(part: &mail_parser::MessagePart<'_>, cut: &Cut) -> bool {
    (part.offset_body as usize) <= cut.at && cut.at < part.offset_end as usize
}

/// Whether mail-parser read every cut as the cutting meant it: inside the body of a binary
/// part, decoded from base64 without trouble, that begins where the cutting saw it begin; or
/// anywhere inside an attached message, which counts here only by its raw size (and the
/// content types of its parts, which whole base64 lines cannot change).
fn cuts_hold(msg: &mail_parser::Message<'_>, cuts: &[Cut]) -> bool {
    cuts.iter().all(|c| {
        msg.parts.iter().any(|p| {
            in_part(p, c)
                && match p.body {
                    PartType::Binary(_) | PartType::InlineBinary(_) => {
                        p.offset_body as usize == c.body
                            && p.encoding == mail_parser::Encoding::Base64
                            && !p.is_encoding_problem
                    }
                    PartType::Message(_) => !p.is_encoding_problem,
                    _ => false,
                }
        })
    })
}

/// The message with the middle of its long base64 bodies cut out, or `None` when nothing is
/// worth cutting. Only lines mail-parser would decode without a remark are cut: a whole number
/// of lines of one length (a multiple of 4) of the base64 alphabet, with the body's last line
/// always kept, so what remains decodes to the same bytes, minus the cut.
fn elide(src: &[u8]) -> Option<Elided> {
    if src.len() < ELIDE_ABOVE {
        return None;
    }
    let mut regions = Vec::new();
    // Each header block (the message's, then the one after each boundary line) and its body.
    let mut pos = 0;
    while pos < src.len() {
        // A closing boundary can be followed at once by its parent's next boundary.
        while src.get(pos..).is_some_and(|s| s.starts_with(b"--")) {
            pos = memchr::memchr(b'\n', src.get(pos..)?).map_or(src.len(), |i| pos + i + 1);
        }
        let (headers, body) = header_block(src, pos);
        let body_end = memchr::memmem::find(src.get(body..)?, b"\n--").map_or(src.len(), |i| body + i + 1);
        if let Some(keep) = src.get(pos..headers).and_then(base64_keep)
            && let Some((a, b, decoded)) = cuttable(src, body, body_end, keep)
        {
            regions.push((body, a, b, decoded));
        }
        // Past the boundary line.
        pos = memchr::memchr(b'\n', src.get(body_end..)?).map_or(src.len(), |i| body_end + i + 1);
    }
    if regions.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(src.len() - regions.iter().map(|r| r.2 - r.1).sum::<usize>());
    let mut cuts = Vec::with_capacity(regions.len());
    let mut copied = 0;
    for (body, a, b, decoded) in regions {
        // Where the body begins, moved back by what earlier cuts took out.
        let body = bytes.len() + body.checked_sub(copied)?;
        bytes.extend_from_slice(src.get(copied..a)?);
        cuts.push(Cut {
            at: bytes.len(),
            body,
            decoded,
            raw: b - a,
        });
        copied = b;
    }
    bytes.extend_from_slice(src.get(copied..)?);
    Some(Elided { bytes, cuts })
}

/// The header block starting at `pos`: where its blank line starts, and where the body
/// after it starts.
fn header_block(src: &[u8], pos: usize) -> (usize, usize) {
    let mut line = pos;
    while line < src.len() {
        let end = memchr::memchr(b'\n', src.get(line..).unwrap_or_default()).map_or(src.len(), |i| line + i + 1);
        if matches!(src.get(line..end), Some(b"\n" | b"\r\n")) {
            return (line, end);
        }
        line = end;
    }
    (src.len(), src.len())
}

/// How much base64 to keep of the body under these headers, or `None` when the body is not
/// base64 of a binary type or is kept whole (text, whose size is its length after charset
/// decoding; attached messages; multiparts; no Content-Type at all, which in a digest means an
/// attached message; anything that does not read as a header block).
fn base64_keep(headers: &[u8]) -> Option<usize> {
    let (mut base64, mut ctype) = (false, None);
    let mut name = &b""[..];
    let mut value = Vec::new();
    let mut take = |name: &[u8], value: &[u8]| {
        let v = value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            base64 = v.eq_ignore_ascii_case(b"base64");
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let t = v.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            ctype = Some(t.to_ascii_lowercase());
        }
    };
    for line in headers.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value.extend_from_slice(line);
            continue;
        }
        take(name, &value);
        let colon = memchr::memchr(b':', line)?;
        name = line.get(..colon)?;
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        value.clear();
        value.extend_from_slice(line.get(colon + 1..)?);
    }
    take(name, &value);
    if !base64 {
        return None;
    }
    match ctype.as_deref() {
        Some(t) if t.starts_with(b"text/") || t.starts_with(b"message/") || t.starts_with(b"multipart/") => None,
        Some(t) if !t.is_empty() => Some(KEEP_BINARY),
        _ => None,
    }
}

/// The lines of the body `[body, end)` past its first `keep` bytes that can be cut: from the
/// next line start, every following line of the same length, a multiple of 4, holding only
/// the base64 alphabet, short of the last line. Returns the byte range and what it decodes to.
fn cuttable(src: &[u8], body: usize, end: usize, keep: usize) -> Option<(usize, usize, usize)> {
    let from = body.checked_add(keep).filter(|&f| f < end)?;
    let a = from + memchr::memchr(b'\n', src.get(from..end)?)? + 1;
    let first = src.get(a..end)?;
    let len = first.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let eol: &[u8] = if first.get(len) == Some(&b'\r') { b"\r\n" } else { b"\n" };
    if len < 16 || len % 4 != 0 || src.get(a + len..a + len + eol.len()) != Some(eol) {
        return None;
    }
    let step = len + eol.len();
    let mut b = a;
    // Stop one line early, so the body's last line (which may be padded) always stays.
    while b + 2 * step <= end {
        let line = src.get(b..b + step)?;
        let (text, ending) = line.split_at(len);
        if !is_base64(text) || ending != eol {
            break;
        }
        b += step;
    }
    let lines = (b - a) / step;
    (lines > 0).then_some((a, b, lines * len / 4 * 3))
}

/// Whether every byte is of the base64 alphabet (no padding). Written without early exit so
/// that it compiles to vector compares.
fn is_base64(line: &[u8]) -> bool {
    line.iter().fold(true, |ok, &b| {
        ok & ((b.wrapping_sub(b'A') < 26)
            | (b.wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'+')
            | (b == b'/'))
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn base64(data: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (i, c) in data.chunks(3).enumerate() {
            if i > 0 && i % 19 == 0 {
                out.push('\n');
            }
            let n =
                u32::from(c[0]) << 16 | u32::from(*c.get(1).unwrap_or(&0)) << 8 | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                out.push(if k <= c.len() {
                    ABC[(n >> (18 - 6 * k) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out.push('\n');
        out
    }

    /// A report with big base64 attachments of every kind `elide` treats differently.
    fn big_message(eol: &str, spoil: bool) -> (Vec<u8>, usize) {
        let mut rng = fastrand::Rng::with_seed(7);
        let pdf: Vec<u8> = (0..600_000).map(|_| rng.u8(..)).collect();
        let log: String = (0..12_000)
            .map(|i| format!("2026-11-25 line {i} GET /app?q={i} 200\n"))
            .collect();
        let png: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
        let mut pdf64 = base64(&pdf);
        if spoil {
            // A stray byte deep in the body: mail-parser keeps such a body raw, so a cut
            // before it would show; the message must be parsed again whole.
            pdf64.replace_range(400_000..400_001, "*");
        }
        let m = format!(
            "From: Reporter <r@example.net>\nTo: security@example.org\nSubject: XSS in the admin console\n\
             Message-ID: <big@example.net>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n\
             preamble\n--outer\nContent-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\n\
             Content-Type: text/plain; charset=utf-8\n\nAn attacker can inject script, see the PoC.\n--alt--\n\
             --outer\nContent-Type: application/pdf; name=\"report.pdf\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment;\n filename=\"report.pdf\"\n\n{pdf64}--outer\n\
             Content-Type: text/plain; name=\"server.log\"\nContent-Transfer-Encoding: BASE64\n\
             Content-Disposition: attachment; filename=\"server.log\"\n\n{}--outer\n\
             Content-Type: message/rfc822\n\nFrom: a@example.com\nSubject: fwd\nContent-Type: multipart/mixed; boundary=\"in\"\n\n\
             --in\nContent-Type: text/plain\n\nsee the picture\n--in\nContent-Type: image/png\n\
             Content-Transfer-Encoding: base64\n\n{}--in--\n\n--outer--\n",
            base64(log.as_bytes()),
            base64(&png),
        );
        (m.replace('\n', eol).into_bytes(), pdf.len())
    }

    #[test]
    fn cutting_long_base64_bodies_changes_nothing_but_work() {
        for eol in ["\n", "\r\n"] {
            let (raw, pdf_size) = big_message(eol, false);
            let cut = elide(&raw).expect("the bodies are long enough to cut");
            assert_eq!(
                cut.cuts.len(),
                2,
                "the pdf and the attached message's png; text is never cut"
            );
            assert!(
                cut.bytes.len() < raw.len() / 2,
                "{} of {} bytes kept",
                cut.bytes.len(),
                raw.len()
            );
            assert!(
                parse_bytes(&raw, &cut.bytes, &cut.cuts).is_some(),
                "mail-parser reads every cut as meant (no second, whole parse)"
            );
            let (fast, whole) = (parse(&raw), parse_whole(&raw));
            assert_eq!(format!("{fast:?}"), format!("{whole:?}"));
            let pdf = fast
                .attachments
                .iter()
                .find(|a| a.content_type == "application/pdf")
                .expect("pdf");
            assert_eq!(pdf.size, pdf_size);
            assert!(
                fast.text.contains("2026-11-25 line 1000 GET"),
                "the log is read as text"
            );
            assert_eq!(fast.attachments.len(), 3);
        }
    }

    #[test]
    fn a_broken_base64_body_is_parsed_whole() {
        let (raw, _) = big_message("\n", true);
        let (fast, whole) = (parse(&raw), parse_whole(&raw));
        assert_eq!(format!("{fast:?}"), format!("{whole:?}"));
    }

    /// Where the cutting misreads the structure, mail-parser's reading wins: boundaries that
    /// are not the declared one, or a MIME part pasted into a text body, are text to
    /// mail-parser, so the cut does not hold and the message is parsed again whole.
    #[test]
    fn a_cut_outside_a_real_base64_part_sends_the_message_to_a_whole_parse() {
        let (raw, _) = big_message("\n", false);
        let text = String::from_utf8(raw).unwrap();
        let wrong_boundary = text.replacen("boundary=\"outer\"", "boundary=\"other\"", 1);
        let pasted = text.replacen(
            "Content-Type: multipart/mixed; boundary=\"outer\"",
            "Content-Type: text/plain",
            1,
        );
        for raw in [wrong_boundary, pasted] {
            let raw = raw.into_bytes();
            let cut = elide(&raw).expect("the cutting still sees base64 parts");
            assert!(
                parse_bytes(&raw, &cut.bytes, &cut.cuts).is_none(),
                "the cut does not hold"
            );
            let (fast, whole) = (parse(&raw), parse_whole(&raw));
            assert_eq!(format!("{fast:?}"), format!("{whole:?}"));
            assert!(whole.text.len() > 60_000, "mail-parser reads it all as text");
        }
    }

    #[test]
    fn small_messages_and_other_bodies_are_never_cut() {
        let (raw, _) = big_message("\n", false);
        assert!(elide(&raw[..ELIDE_ABOVE - 1]).is_none());
        // The same bodies, but not declared base64 (or declared HTML): kept whole.
        let text = String::from_utf8(raw).unwrap();
        for (from, to) in [
            ("Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: 7bit"),
            ("Content-Type: application/pdf;", "Content-Type: text/html;"),
        ] {
            let changed = text.replacen(from, to, 1).replacen("BASE64", "7bit", 1).replacen(
                "Content-Type: image/png\nContent-Transfer-Encoding: base64",
                "Content-Type: image/png",
                1,
            );
            assert!(elide(changed.as_bytes()).is_none(), "{to}");
        }
    }
}
