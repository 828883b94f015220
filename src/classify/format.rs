//! Format rules: can a person read this report as plain text?
//!
//! The policy asks for one plain-text, unencrypted email per vulnerability. Rejected here:
//! messages over the size limit, encrypted messages (PGP/MIME, S/MIME enveloped data,
//! inline PGP), messages whose report is only in an image, video, PDF or office document,
//! and HTML-only messages. Accepted: multipart/alternative with a text part, signed mail,
//! text reports with screenshots or PoC attachments.

use std::sync::LazyLock;

use regex::Regex;

use super::{Reason, Signal};
use crate::parse::{Encryption, Inbound};

/// Text that only points at an attachment ("see attached", "details in the PDF").
static POINTS_AT_ATTACHMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:attach|enclos|find (?:the )?(?:report|details|document|file)|see (?:the )?(?:pdf|document|file|report|screenshot|video|image)|details (?:are )?in (?:the )?|in the (?:pdf|document|file|report|screenshot|video|image)|refer to the|anbei|im anhang|ci-joint|en pièce jointe|adjunto)",
    )
    .expect("static regex")
});

/// Words of text that still count as "nothing but a pointer to the attachment".
const TRIVIAL_WORDS: usize = 40;

/// The first format rule that applies, with its evidence.
pub fn check(msg: &Inbound, max_size: usize) -> Option<(Reason, Signal)> {
    if msg.size > max_size {
        return Some((
            Reason::TooLarge,
            Signal::new("size", 0, &format!("{} bytes > {} allowed", msg.size, max_size)),
        ));
    }
    if let Some(enc) = msg.encryption {
        let what = match enc {
            Encryption::PgpMime => "multipart/encrypted (PGP/MIME)",
            Encryption::Smime => "application/pkcs7-mime (S/MIME enveloped data)",
            Encryption::InlinePgp => "-----BEGIN PGP MESSAGE-----",
        };
        return Some((Reason::Encrypted, Signal::new("mime:encrypted", 0, what)));
    }
    let trivial_text = || {
        let text = substantive(msg.body());
        let words = text.split_whitespace().count();
        let trivial = words <= 5 || (words <= TRIVIAL_WORDS && POINTS_AT_ATTACHMENT.is_match(&text));
        (trivial, words)
    };
    if msg.encrypted_attachment && trivial_text().0 {
        let evidence = "an encrypted attachment and next to no text";
        return Some((Reason::Encrypted, Signal::new("mime:encrypted-attachment", 0, evidence)));
    }
    if let Some(doc) = msg.attachments.iter().find(|a| a.kind.is_document() && !a.inline) {
        let (trivial, words) = trivial_text();
        if trivial {
            let evidence = format!("{} ({}), {words} words of text", doc.content_type, doc.size);
            return Some((Reason::AttachmentOnly, Signal::new("mime:document-only", 0, &evidence)));
        }
    }
    let plain_empty = msg.text.trim().is_empty();
    if plain_empty && msg.has_html {
        return Some((
            Reason::HtmlOnly,
            Signal::new("mime:no-text-plain", 0, "text/html without text/plain"),
        ));
    }
    None
}

/// Lines that close a message: what follows is a signature or a disclaimer.
static SIGN_OFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:(?:(?:kind|best|warm|many thanks and) )?regards|thanks|thank you|cheers|sincerely|best|cordially|yours(?: faithfully| sincerely| truly)?|mit freundlichen grüßen|viele grüße|cordialement|saludos)\b[^a-z]{0,3}$|(?i)^\s*(?:confidentiality notice|disclaimer|this e-?mail and any attachments)",
    )
    .expect("static regex")
});

/// The reporter's own words: no quoted lines, nothing after the sign-off or `-- `.
fn substantive(body: &str) -> String {
    let mut out = String::new();
    for line in body.lines() {
        if line == "-- " || line == "--" || SIGN_OFF.is_match(line) {
            break;
        }
        let t = line.trim();
        if t.starts_with('>') || t.is_empty() {
            continue;
        }
        out.push_str(t);
        out.push('\n');
    }
    out
}
