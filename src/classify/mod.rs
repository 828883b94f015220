//! [`Inbound`] -> [`Verdict`]: what to do with a message, and why.
//!
//! Rule families are checked in a fixed order and the first that applies wins:
//! [`automated`] (ignore), [`thread`] (followup), [`format`](mod@format) (reject_format), [`topic`]
//! (reject_offtopic or report), then [`route`] picks the project of a report.
//!
//! Classification is a pure function of the message, the config and a [`Threads`] view of
//! what is already known (cases, message-ids). It does no I/O of its own and cannot fail:
//! a malformed message still gets a verdict. Every verdict carries the [`Signal`]s that
//! decided it, so `classify --json` and the case timeline can say why.

pub mod automated;
pub mod format;
pub mod route;
pub mod thread;
pub mod topic;

use serde::Serialize;

use crate::config::Config;
use crate::parse::Inbound;

/// What happens to a message. The words are a contract: tools and tests rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Automated mail: recorded, never answered.
    Ignore,
    /// Belongs to an existing case.
    Followup,
    /// Not readable as a plain-text report; the sender is asked to resubmit.
    RejectFormat,
    /// Not an undisclosed vulnerability; the sender is told where to go.
    RejectOfftopic,
    /// A new case.
    Report,
}

impl Kind {
    /// The contract word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ignore => "ignore",
            Kind::Followup => "followup",
            Kind::RejectFormat => "reject_format",
            Kind::RejectOfftopic => "reject_offtopic",
            Kind::Report => "report",
        }
    }
}

/// Why a verdict was reached. The words are a contract, like [`Kind`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Our own mail came back.
    Loop,
    /// A delivery failure report.
    Bounce,
    /// An auto-reply, vacation notice or read receipt.
    AutoReply,
    /// Mailing-list traffic.
    List,
    /// Bulk or junk precedence.
    Bulk,
    /// Flagged as spam upstream.
    Spam,
    /// A case tag in the subject.
    CaseTag,
    /// `In-Reply-To` / `References` name a message of a case.
    Thread,
    /// No text/plain body.
    HtmlOnly,
    /// The report is only in a document attachment.
    AttachmentOnly,
    /// Encrypted: we publish plain text only.
    Encrypted,
    /// Over the size limit.
    TooLarge,
    /// A functional bug report.
    BugReport,
    /// A question or enquiry.
    Question,
    /// Raw scanner output.
    ScannerOutput,
    /// A reply to our off-topic answer: a person insists, so a case is opened.
    Appeal,
}

impl Reason {
    /// The contract word.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Loop => "loop",
            Reason::Bounce => "bounce",
            Reason::AutoReply => "auto_reply",
            Reason::List => "list",
            Reason::Bulk => "bulk",
            Reason::Spam => "spam",
            Reason::CaseTag => "case_tag",
            Reason::Thread => "thread",
            Reason::HtmlOnly => "html_only",
            Reason::AttachmentOnly => "attachment_only",
            Reason::Encrypted => "encrypted",
            Reason::TooLarge => "too_large",
            Reason::BugReport => "bug_report",
            Reason::Question => "question",
            Reason::ScannerOutput => "scanner_output",
            Reason::Appeal => "appeal",
        }
    }
}

/// One piece of evidence: which rule fired, its weight, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Rule name, e.g. `attacker_framing` or `header:list-id`.
    pub signal: &'static str,
    /// Its weight in the topic score (0 for decisive header rules).
    pub weight: i32,
    /// What it matched (a short excerpt, control characters removed).
    pub evidence: String,
}

impl Signal {
    pub(crate) fn new(signal: &'static str, weight: i32, evidence: &str) -> Signal {
        Signal {
            signal,
            weight,
            evidence: excerpt(evidence, 80),
        }
    }
}

/// The decision about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What happens.
    pub verdict: Kind,
    /// Why, when there is a single reason.
    pub reason: Option<Reason>,
    /// Routed project id (reports only); `None` goes to the default triage team.
    pub project: Option<String>,
    /// The existing case (followups).
    pub case: Option<String>,
    /// Keywords that routed the report, with their counts.
    pub keywords: Vec<route::KeywordHit>,
    /// Evidence, strongest first.
    pub signals: Vec<Signal>,
}

impl Verdict {
    fn new(verdict: Kind, reason: Option<Reason>, signals: Vec<Signal>) -> Verdict {
        Verdict {
            verdict,
            reason,
            project: None,
            case: None,
            keywords: Vec::new(),
            signals,
        }
    }
}

/// What the store knows about earlier mail. Implemented by the store (on the open
/// transaction) and by in-memory maps in tests and dry runs.
pub trait Threads {
    /// Whether a case with this id exists.
    fn case_exists(&self, case_id: &str) -> bool;
    /// The case a message-id (received or sent by us) belongs to.
    fn case_of_message(&self, message_id: &str) -> Option<String>;
    /// Whether this message-id is one of our off-topic replies.
    fn is_offtopic_reply(&self, message_id: &str) -> bool;
}

/// A [`Threads`] that knows nothing: every message is new.
pub struct NoThreads;

impl Threads for NoThreads {
    fn case_exists(&self, _: &str) -> bool {
        false
    }
    fn case_of_message(&self, _: &str) -> Option<String> {
        None
    }
    fn is_offtopic_reply(&self, _: &str) -> bool {
        false
    }
}

/// The rules, compiled once from a config.
pub struct Classifier {
    thread: thread::ThreadRules,
    topic: topic::TopicRules,
    router: route::Router,
    max_size: usize,
}

impl Classifier {
    /// Compiles the rules for this config.
    pub fn new(config: &Config) -> Classifier {
        Classifier {
            thread: thread::ThreadRules::new(&config.triage.case_prefix),
            topic: topic::TopicRules::new(),
            router: route::Router::new(&config.projects),
            max_size: config.triage.max_message_size,
        }
    }

    /// Decides what to do with one message. Pure, total, and explainable.
    pub fn classify(&self, msg: &Inbound, threads: &dyn Threads) -> Verdict {
        self.classify_with_limit(msg, threads, self.max_size)
    }

    /// The part of [`Classifier::classify`] that needs no store: the verdict as if the
    /// message linked to no case. Pure, so it can run on another thread ahead of the store;
    /// [`Classifier::finish`] completes it.
    pub fn prepare(&self, msg: &Inbound) -> Verdict {
        self.classify(msg, &NoThreads)
    }

    /// Completes a verdict from [`Classifier::prepare`] against the store: always equal to
    /// `classify(msg, threads)`. Only a message that links to a case or answers one of our
    /// off-topic replies (rare) is classified again.
    pub fn finish(&self, msg: &Inbound, threads: &dyn Threads, prepared: Verdict) -> Verdict {
        if prepared.verdict == Kind::Ignore {
            return prepared;
        }
        match self.thread.check(msg, threads) {
            thread::Link::None => prepared,
            _ => self.classify(msg, threads),
        }
    }

    /// As [`Classifier::classify`], with another size limit (fixture tests).
    pub fn classify_with_limit(&self, msg: &Inbound, threads: &dyn Threads, max_size: usize) -> Verdict {
        if let Some((reason, signal)) = automated::check(msg) {
            return Verdict::new(Kind::Ignore, Some(reason), vec![signal]);
        }
        let link = self.thread.check(msg, threads);
        if let thread::Link::Case { case, reason, signal } = link {
            let mut v = Verdict::new(Kind::Followup, Some(reason), vec![signal]);
            v.case = Some(case);
            return v;
        }
        if let Some((reason, signal)) = format::check(msg, max_size) {
            return Verdict::new(Kind::RejectFormat, Some(reason), vec![signal]);
        }
        let appeal = matches!(link, thread::Link::Appeal { .. });
        let text = topic::Text::of(msg);
        let scored = self.topic.score_text(&text);
        let mut v = match (appeal, scored.offtopic) {
            (false, Some(reason)) => Verdict::new(Kind::RejectOfftopic, Some(reason), scored.signals),
            _ => {
                let mut signals = scored.signals;
                if let thread::Link::Appeal { signal } = link {
                    signals.insert(0, signal);
                }
                Verdict::new(Kind::Report, appeal.then_some(Reason::Appeal), signals)
            }
        };
        if v.verdict == Kind::Report {
            let routed = self.router.route(&text.subject, &text.body);
            v.project = routed.project;
            v.keywords = routed.hits;
        }
        v
    }
}

/// A short, single-line, control-free excerpt of untrusted text, cut at a char boundary.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut space = false;
    let mut count = 0;
    for c in s.chars() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        if c.is_whitespace() || c.is_control() || is_bidi(c) {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
            count += 1;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// Unicode bidi controls, which can make displayed text lie about its order.
pub fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}
