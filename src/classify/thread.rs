//! Follow-ups: mail that belongs to a case we already have.
//!
//! A message joins a case when its subject carries the tag of an existing case
//! (`[SEC-2026-0042]`), or when `In-Reply-To` / `References` name a message of that case —
//! one we received or one we sent. A tag for a case that does not exist is ignored (anyone
//! can type a tag). A reply to one of our off-topic answers is an *appeal*: the sender says
//! we got it wrong, so it becomes a report whatever it reads like.

use regex::Regex;

use super::{Reason, Signal, Threads};
use crate::parse::Inbound;

/// How a message relates to earlier mail.
pub enum Link {
    /// Not linked to anything we know.
    None,
    /// Part of an existing case.
    Case {
        /// The case id.
        case: String,
        /// `case_tag` or `thread`.
        reason: Reason,
        /// What linked it.
        signal: Signal,
    },
    /// A reply to one of our off-topic answers.
    Appeal {
        /// What linked it.
        signal: Signal,
    },
}

/// The compiled case-tag pattern.
pub struct ThreadRules {
    tag: Regex,
}

impl ThreadRules {
    /// Tags look like `[PREFIX-YYYY-NNNN]`.
    pub fn new(prefix: &str) -> ThreadRules {
        let tag = Regex::new(&format!(r"\[({}-\d{{4}}-\d{{4,6}})\]", regex::escape(prefix)))
            .expect("escaped prefix makes a valid regex");
        ThreadRules { tag }
    }

    /// Case tags in a subject, in order.
    pub fn tags<'s>(&self, subject: &'s str) -> impl Iterator<Item = &'s str> + use<'s, '_> {
        self.tag
            .captures_iter(subject)
            .filter_map(|c| c.get(1).map(|m| m.as_str()))
    }

    /// Links a message to a case or to one of our off-topic replies.
    pub fn check(&self, msg: &Inbound, threads: &dyn Threads) -> Link {
        for tag in self.tags(&msg.subject) {
            if threads.case_exists(tag) {
                return Link::Case {
                    case: tag.to_string(),
                    reason: Reason::CaseTag,
                    signal: Signal::new("subject:case-tag", 0, tag),
                };
            }
        }
        // In-Reply-To first (the direct parent), then References newest first.
        let ids = msg.in_reply_to.iter().chain(msg.references.iter().rev());
        let mut appeal = None;
        for id in ids {
            if let Some(case) = threads.case_of_message(id) {
                return Link::Case {
                    case,
                    reason: Reason::Thread,
                    signal: Signal::new("header:in-reply-to", 0, id),
                };
            }
            if appeal.is_none() && threads.is_offtopic_reply(id) {
                appeal = Some(Signal::new("reply-to:offtopic-answer", 0, id));
            }
        }
        match appeal {
            Some(signal) => Link::Appeal { signal },
            None => Link::None,
        }
    }
}
