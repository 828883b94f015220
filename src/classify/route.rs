//! Routing: which project's team gets a report.
//!
//! Every project keyword goes into one Aho-Corasick automaton (lowercased, leftmost-longest),
//! which scans the lowercased subject and body once. A hit counts only as a whole word:
//! the characters around it must not be letters, digits or `_`. A subject hit weighs
//! [`SUBJECT_WEIGHT`], a body hit 1, so a report naming one project in passing and another
//! throughout goes to the second. The top score wins; a tie routes to nobody (the default
//! triage team), because guessing would send a private report to the wrong people.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Serialize;

use crate::config::Project;

/// Weight of a keyword hit in the subject.
pub const SUBJECT_WEIGHT: u32 = 3;

/// A matched keyword and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeywordHit {
    /// Project id.
    pub project: String,
    /// The keyword as configured.
    pub keyword: String,
    /// Hits (subject hits count [`SUBJECT_WEIGHT`]).
    pub score: u32,
}

/// The routing outcome.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// The winning project, when there is exactly one.
    pub project: Option<String>,
    /// Every keyword that matched.
    pub hits: Vec<KeywordHit>,
}

/// The compiled keyword automaton.
pub struct Router {
    automaton: Option<AhoCorasick>,
    /// Pattern index -> (project index, keyword).
    patterns: Vec<(usize, String)>,
    projects: Vec<String>,
}

impl Router {
    /// Builds the automaton over every project's keywords.
    pub fn new(projects: &[Project]) -> Router {
        let mut patterns = Vec::new();
        for (i, p) in projects.iter().enumerate() {
            for k in &p.keywords {
                patterns.push((i, k.clone()));
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(patterns.iter().map(|(_, k)| k.to_lowercase()))
                .ok()
        };
        Router {
            automaton,
            patterns,
            projects: projects.iter().map(|p| p.id.clone()).collect(),
        }
    }

    /// Routes a report by its subject and body, both lowercased (the classifier passes the
    /// topic rules' [`super::topic::Text`]: the sender's own words, without quoted lines and
    /// signature).
    pub fn route(&self, subject: &str, body: &str) -> Routed {
        let Some(ac) = &self.automaton else {
            return Routed::default();
        };
        let mut per_pattern = vec![0u32; self.patterns.len()];
        for (text, weight) in [(subject, SUBJECT_WEIGHT), (body, 1)] {
            for m in ac.find_iter(text) {
                if is_word(text, m.start(), m.end())
                    && let Some(n) = per_pattern.get_mut(m.pattern().as_usize())
                {
                    *n += weight;
                }
            }
        }
        let mut per_project = vec![0u32; self.projects.len()];
        let mut hits = Vec::new();
        for (idx, &score) in per_pattern.iter().enumerate() {
            if score == 0 {
                continue;
            }
            let Some((project, keyword)) = self.patterns.get(idx) else {
                continue;
            };
            if let Some(total) = per_project.get_mut(*project) {
                *total += score;
            }
            hits.push(KeywordHit {
                project: self.projects.get(*project).cloned().unwrap_or_default(),
                keyword: keyword.clone(),
                score,
            });
        }
        hits.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.keyword.cmp(&b.keyword)));
        let best = per_project.iter().copied().max().unwrap_or(0);
        let winners: Vec<usize> = (0..per_project.len())
            .filter(|&i| per_project.get(i) == Some(&best))
            .collect();
        let project = match winners.as_slice() {
            [one] if best > 0 => self.projects.get(*one).cloned(),
            _ => None,
        };
        Routed { project, hits }
    }
}

/// Whether `text[start..end]` stands as a whole word.
fn is_word(text: &str, start: usize, end: usize) -> bool {
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(end..).and_then(|s| s.chars().next());
    !before.is_some_and(word_char) && !after.is_some_and(word_char)
}
