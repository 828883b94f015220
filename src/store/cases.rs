//! Cases, their life cycle, and their timeline.
//!
//! A case moves reported -> forwarded -> accepted | rejected -> cve -> fixed -> released ->
//! announced. `forwarded` is set by the outbox worker when the team's copy was delivered;
//! the rest by the security team from the CLI. [`CaseState::can_move_to`] holds the allowed
//! moves, so a typo cannot announce an unfixed case.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Result, StoreError};

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Received and acknowledged; the forward to the team is queued.
    Reported,
    /// The team has it.
    Forwarded,
    /// The team confirmed a vulnerability.
    Accepted,
    /// The team decided it is not one.
    Rejected,
    /// A CVE id is allocated.
    Cve,
    /// Fixed in the code.
    Fixed,
    /// A release with the fix is out.
    Released,
    /// The advisory is published.
    Announced,
}

impl CaseState {
    /// All states, in life-cycle order.
    pub const ALL: [CaseState; 8] = [
        CaseState::Reported,
        CaseState::Forwarded,
        CaseState::Accepted,
        CaseState::Rejected,
        CaseState::Cve,
        CaseState::Fixed,
        CaseState::Released,
        CaseState::Announced,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Reported => "reported",
            CaseState::Forwarded => "forwarded",
            CaseState::Accepted => "accepted",
            CaseState::Rejected => "rejected",
            CaseState::Cve => "cve",
            CaseState::Fixed => "fixed",
            CaseState::Released => "released",
            CaseState::Announced => "announced",
        }
    }

    /// Parses a stored word.
    pub fn parse(s: &str) -> Option<CaseState> {
        CaseState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the team may move a case from `self` to `to`.
    pub fn can_move_to(self, to: CaseState) -> bool {
        use CaseState::*;
        matches!(
            (self, to),
            (Reported, Forwarded | Accepted | Rejected)
                | (Forwarded, Accepted | Rejected)
                | (Accepted, Cve | Fixed | Rejected)
                | (Rejected, Accepted)
                | (Cve, Fixed)
                | (Fixed, Released)
                | (Released, Announced)
        )
    }
}

/// A new case.
pub struct NewCase<'a> {
    /// Id prefix (`SEC`).
    pub prefix: &'a str,
    /// Year of the id.
    pub year: i32,
    /// Routed project.
    pub project: Option<&'a str>,
    /// Reporter address.
    pub reporter: &'a str,
    /// Subject (sanitised for display).
    pub subject: &'a str,
    /// Opened by an appeal.
    pub appeal: bool,
    /// Signals JSON.
    pub signals: &'a str,
    /// Now.
    pub at: i64,
}

/// Allocates the next id of the year and inserts the case; returns the id.
pub fn create(conn: &Connection, c: &NewCase<'_>) -> Result<String> {
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM cases WHERE year = ?1")?
        .query_row([c.year], |r| r.get(0))?;
    let id = format!("{}-{}-{:04}", c.prefix, c.year, seq);
    conn.prepare_cached(
        "INSERT INTO cases (id, year, seq, project, state, reporter, subject, appeal, signals, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'reported', ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        id, c.year, seq, c.project, c.reporter, c.subject, c.appeal, c.signals, c.at
    ])?;
    Ok(id)
}

/// Appends to a case's timeline and touches its `updated_at`.
pub fn event(conn: &Connection, case_id: &str, at: i64, kind: &str, detail: &str, message: Option<i64>) -> Result<()> {
    conn.prepare_cached("INSERT INTO case_events (case_id, at, kind, detail, message) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![case_id, at, kind, detail, message])?;
    conn.prepare_cached("UPDATE cases SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![case_id, at])?;
    Ok(())
}

/// Moves a case to a new state, recording who asked and why on the timeline.
pub fn set_state(conn: &Connection, case_id: &str, to: CaseState, note: &str, at: i64) -> Result<CaseState> {
    let from = state(conn, case_id)?.ok_or_else(|| StoreError::Invalid(format!("no case {case_id}")))?;
    if !from.can_move_to(to) {
        return Err(StoreError::Invalid(format!(
            "{case_id} is {}; it cannot move to {}",
            from.as_str(),
            to.as_str()
        )));
    }
    conn.execute(
        "UPDATE cases SET state = ?2 WHERE id = ?1",
        params![case_id, to.as_str()],
    )?;
    let detail = if note.is_empty() {
        format!("{} -> {}", from.as_str(), to.as_str())
    } else {
        format!("{} -> {}: {note}", from.as_str(), to.as_str())
    };
    event(conn, case_id, at, "state", &detail, None)?;
    Ok(from)
}

/// Records CVE ids for a case (space separated, deduplicated, in the given order).
pub fn add_cve(conn: &Connection, case_id: &str, cve: &str, at: i64) -> Result<()> {
    let current: String = conn
        .query_row("SELECT cve FROM cases WHERE id = ?1", [case_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Invalid(format!("no case {case_id}")))?;
    let mut ids: Vec<&str> = current.split_whitespace().collect();
    if !ids.contains(&cve) {
        ids.push(cve);
    }
    conn.execute(
        "UPDATE cases SET cve = ?2 WHERE id = ?1",
        params![case_id, ids.join(" ")],
    )?;
    event(conn, case_id, at, "cve", cve, None)
}

/// The state of a case.
pub fn state(conn: &Connection, case_id: &str) -> Result<Option<CaseState>> {
    let s: Option<String> = conn
        .prepare_cached("SELECT state FROM cases WHERE id = ?1")?
        .query_row([case_id], |r| r.get(0))
        .optional()?;
    Ok(s.and_then(|s| CaseState::parse(&s)))
}

/// A case as listed.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    /// Id.
    pub id: String,
    /// Project, `null` for triage.
    pub project: Option<String>,
    /// State word.
    pub state: String,
    /// Reporter address.
    pub reporter: String,
    /// Subject.
    pub subject: String,
    /// Opened by an appeal.
    pub appeal: bool,
    /// CVE ids.
    pub cve: Vec<String>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

const SUMMARY_COLUMNS: &str = "id, project, state, reporter, subject, appeal, cve, created_at, updated_at";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<CaseSummary> {
    let cve: String = r.get(6)?;
    Ok(CaseSummary {
        id: r.get(0)?,
        project: r.get(1)?,
        state: r.get(2)?,
        reporter: r.get(3)?,
        subject: r.get(4)?,
        appeal: r.get(5)?,
        cve: cve.split_whitespace().map(str::to_string).collect(),
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Cases, newest first, optionally filtered.
pub fn list(conn: &Connection, state: Option<&str>, project: Option<&str>) -> Result<Vec<CaseSummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM cases
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR project = ?2)
         ORDER BY year DESC, seq DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![state, project], summary)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One case.
pub fn get(conn: &Connection, id: &str) -> Result<Option<CaseSummary>> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM cases WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], summary).optional()?)
}

/// A timeline entry.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When (Unix seconds).
    pub at: i64,
    /// What.
    pub kind: String,
    /// Details.
    pub detail: String,
    /// The message it concerns.
    pub message: Option<i64>,
}

/// A case's timeline, oldest first.
pub fn events(conn: &Connection, id: &str) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare("SELECT at, kind, detail, message FROM case_events WHERE case_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([id], |r| {
        Ok(Event {
            at: r.get(0)?,
            kind: r.get(1)?,
            detail: r.get(2)?,
            message: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A message of a case, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct CaseMessage {
    /// Row id.
    pub id: i64,
    /// Message-ID.
    pub message_id: Option<String>,
    /// From address.
    pub from: String,
    /// Subject.
    pub subject: String,
    /// Verdict word.
    pub verdict: String,
    /// Received (Unix seconds).
    pub received_at: i64,
    /// Date header (Unix seconds).
    pub date: Option<i64>,
    /// Size in bytes.
    pub size: i64,
}

/// Messages of a case, oldest first.
pub fn messages(conn: &Connection, id: &str) -> Result<Vec<CaseMessage>> {
    let mut stmt = conn.prepare(
        "SELECT id, message_id, from_addr, subject, verdict, received_at, date, size
         FROM messages WHERE case_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(CaseMessage {
            id: r.get(0)?,
            message_id: r.get(1)?,
            from: r.get(2)?,
            subject: r.get(3)?,
            verdict: r.get(4)?,
            received_at: r.get(5)?,
            date: r.get(6)?,
            size: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
