//! Automated mail: loops, bounces, auto-replies, lists, bulk and upstream-flagged spam.
//!
//! These get `ignore` and no reply, ever: answering a machine is how mail loops start
//! (RFC 3834 §2). Checked in the order of the [`Reason`] contract: loop, bounce, auto_reply,
//! list, bulk, spam. Header rules are decisive; the few body rules (classic text bounces)
//! look only at the start of the body and at phrases no human report opens with.

use std::sync::LazyLock;

use regex::Regex;

use super::{Reason, Signal};
use crate::parse::{Inbound, ReportKind, ReturnPath};

/// Text-bounce subjects, as MTAs write them.
static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:fwd?:\s*)?(?:undeliver(?:ed|able)\b|undelivered mail returned to sender|delivery status notification \((?:failure|delay)\)|delivery (?:has )?fail(?:ed|ure)|returned mail\b|mail delivery (?:failed|failure|system)|failure notice\b|non[- ]?deliver(?:y|able)|delivery notification:? delivery has failed|message (?:not delivered|delivery failure)|could not send message|warning: could not send message|mail system error|nicht zustellbar|unzustellbar|\[?postmaster\]? ?non-delivery|delivery status notification\b|complaint about message from|メールエラー|配信エラー|配送エラー|送信エラー)",
    )
    .expect("static regex")
});

/// Text-bounce openings, searched in the first part of the body only, ASCII-lowercased
/// (a case-sensitive search for lowercase literals is several times faster than `(?i)`).
static BOUNCE_BODY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:this is the mail system at host|this is the qmail-send program|i'm afraid i wasn't able to deliver your message|i'm sorry to have to inform you that your message could not|delivery to the following recipients? (?:failed|has been delayed)|could not be delivered to one or more (?:of its )?recipients|your message (?:could not|cannot|was not|wasn't) (?:be )?delivered|the following addresses had permanent fatal errors|message delivery to the following recipients? failed|this message was created automatically by mail delivery software|a message that you sent could not be delivered|your message did not reach some or all of the intended recipients|undeliverable message|delivery has failed to these recipients|error: invalid user address|requested action not taken: (?:mailbox unavailable|no such user)|\\?"notificationtype\\?"\s*:\s*\\?"(?:bounce|complaint|delivery)\\?")"#,
    )
    .expect("static regex")
});

/// Auto-reply subjects.
static AUTO_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:(?:re|aw|sv|vs):\s*)?(?:\[?auto(?:matic)?[- ]?(?:reply|response|antwort|respond)|autoreply|auto-?réponse|réponse automatique|respuesta automática|risposta automatica|out of (?:the )?office|ooo\b|on vacation|vacation (?:reply|notice|message|auto)|abwesenheit|abwesend|away from (?:my|the) (?:desk|office|email)|i am (?:currently )?(?:out of|away from) the office|read: |gelesen: |read receipt|delivery receipt)",
    )
    .expect("static regex")
});

/// Local parts of senders that only machines use.
fn is_machine_sender(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon"
            | "mailer_daemon"
            | "maildaemon"
            | "mailerdaemon"
            | "postmaster"
            | "post_master"
            | "mail-daemon"
            | "mail.delivery.system"
            | "mail-delivery-system"
    )
}

/// The first ignore rule that applies, with its evidence.
pub fn check(msg: &Inbound) -> Option<(Reason, Signal)> {
    let a = &msg.auto;
    if let Some(v) = &a.secintake_loop {
        return Some((Reason::Loop, Signal::new("header:x-secintake-loop", 0, v)));
    }
    if let Some(s) = bounce(msg) {
        return Some((Reason::Bounce, s));
    }
    if let Some(s) = auto_reply(msg) {
        return Some((Reason::AutoReply, s));
    }
    if let Some(h) = &a.list_header {
        return Some((Reason::List, Signal::new("header:list", 0, h)));
    }
    if let Some(p) = &a.precedence {
        let p = p.trim();
        if p.starts_with("list") {
            return Some((Reason::List, Signal::new("header:precedence", 0, p)));
        }
        if p.starts_with("bulk") || p.starts_with("junk") {
            return Some((Reason::Bulk, Signal::new("header:precedence", 0, p)));
        }
    }
    if let Some(v) = &a.x_spam_flag
        && v.trim_start().starts_with("yes")
    {
        return Some((Reason::Spam, Signal::new("header:x-spam-flag", 0, v)));
    }
    if let Some(v) = &a.x_spam_status
        && v.trim_start().starts_with("yes")
    {
        return Some((Reason::Spam, Signal::new("header:x-spam-status", 0, v)));
    }
    if let Some(v) = &a.x_spam
        && (v.trim_start().starts_with("yes") || v.trim_start().starts_with("spam"))
    {
        return Some((Reason::Spam, Signal::new("header:x-spam", 0, v)));
    }
    None
}

fn bounce(msg: &Inbound) -> Option<Signal> {
    match msg.report {
        Some(ReportKind::DeliveryStatus | ReportKind::Other) => {
            return Some(Signal::new(
                "mime:delivery-status",
                0,
                "multipart/report; report-type=delivery-status",
            ));
        }
        Some(ReportKind::Feedback) => {
            return Some(Signal::new(
                "mime:feedback-report",
                0,
                "multipart/report; report-type=feedback-report",
            ));
        }
        _ => {}
    }
    if msg.return_path == ReturnPath::Null && msg.report != Some(ReportKind::Disposition) {
        // The null sender is used by bounces and by auto-replies; the subject tells which.
        if !AUTO_SUBJECT.is_match(&msg.subject) {
            return Some(Signal::new("header:return-path", 0, "<>"));
        }
    }
    if let Some(from) = &msg.from
        && (is_machine_sender(&from.address)
            || from.name.as_deref().is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.contains("mail delivery") || n.contains("mailer-daemon") || n == "postmaster"
            }))
    {
        return Some(Signal::new("header:from", 0, &from.address));
    }
    if let ReturnPath::Address(rp) = &msg.return_path
        && is_machine_sender(rp)
    {
        return Some(Signal::new("header:return-path", 0, rp));
    }
    if msg.auto.failed_recipients {
        return Some(Signal::new("header:x-failed-recipients", 0, "present"));
    }
    if let Some(m) = BOUNCE_SUBJECT.find(&msg.subject) {
        return Some(Signal::new("subject:bounce", 0, m.as_str()));
    }
    let head = head_of(msg.body(), 2048);
    if let Some(m) = BOUNCE_BODY.find(&head.to_ascii_lowercase()) {
        // ASCII lowercasing keeps every byte where it was: quote the head as written.
        return Some(Signal::new("body:bounce", 0, head.get(m.range()).unwrap_or_default()));
    }
    None
}

fn auto_reply(msg: &Inbound) -> Option<Signal> {
    let a = &msg.auto;
    if let Some(v) = &a.auto_submitted {
        // RFC 3834: anything but "no" (parameters and comments may follow the keyword).
        let keyword = v.split([';', '(', ' ']).next().unwrap_or("").trim();
        if keyword != "no" {
            return Some(Signal::new("header:auto-submitted", 0, v));
        }
    }
    if let Some(v) = &a.x_autoreply {
        return Some(Signal::new("header:x-autoreply", 0, v));
    }
    if let Some(p) = &a.precedence
        && p.trim().starts_with("auto_reply")
    {
        return Some(Signal::new("header:precedence", 0, p));
    }
    if msg.report == Some(ReportKind::Disposition) {
        return Some(Signal::new("mime:disposition-notification", 0, "read receipt"));
    }
    if let Some(m) = AUTO_SUBJECT.find(&msg.subject) {
        return Some(Signal::new("subject:auto-reply", 0, m.as_str()));
    }
    None
}

/// The first `max` bytes of `s`, cut at a char boundary.
pub(crate) fn head_of(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}
