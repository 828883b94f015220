//! The outbox table: mail waiting to leave, and what happened when it tried.
//!
//! Rows are written in the same transaction as the message and case that caused them, and
//! only ever move forward: due -> sent, or due -> (retry)* -> sent | failed. The worker that
//! drains it lives in [`crate::send`].

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A message to queue.
pub struct NewOutgoing<'a> {
    /// Reply kind (`ack`, `forward`, `reject_html_only`, ...).
    pub kind: &'a str,
    /// An RFC 3834 automatic reply (sent with the null envelope sender, rate limited).
    pub auto_reply: bool,
    /// The case it belongs to.
    pub case_id: Option<&'a str>,
    /// The message that caused it.
    pub message: Option<i64>,
    /// Our Message-ID, without brackets.
    pub rfc822_id: &'a str,
    /// Envelope sender; empty for the null sender.
    pub envelope_from: &'a str,
    /// Envelope recipients.
    pub recipients: &'a [String],
    /// Lowercased recipient for rate limiting automatic replies.
    pub rate_key: &'a str,
    /// The rendered message, without the original when `original_at` is set.
    pub body: &'a [u8],
    /// Where the original (`message`'s raw bytes) goes in `body` at send time.
    pub original_at: Option<usize>,
    /// Now.
    pub at: i64,
}

/// Queues a message; returns its row id.
pub fn enqueue(conn: &Connection, o: &NewOutgoing<'_>) -> Result<i64> {
    let recipients = serde_json::to_string(o.recipients).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO outbox (kind, auto_reply, case_id, message, rfc822_id, envelope_from, recipients,
                             rate_key, original_at, created_at, next_attempt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        o.kind,
        o.auto_reply,
        o.case_id,
        o.message,
        o.rfc822_id,
        o.envelope_from,
        recipients,
        o.rate_key,
        o.original_at.map(|at| at as i64),
        o.at
    ])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("INSERT INTO outbox_body (id, body) VALUES (?1, ?2)")?
        .execute(params![id, o.body])?;
    Ok(id)
}

/// Automatic replies queued to `rate_key` since `since`.
pub fn auto_replies_since(conn: &Connection, rate_key: &str, since: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM outbox WHERE auto_reply = 1 AND rate_key = ?1 AND created_at >= ?2")?
        .query_row(params![rate_key, since], |r| r.get(0))?)
}

/// A queued message's bytes as stored.
///
/// A forward carries the whole original message, which the `messages` table holds already,
/// so its row keeps only the offset where the original goes; the sender puts it back
/// (`crate::send::wire`). Each message's bytes are then written to the database once.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The rendered message, without the original when `original_at` is set.
    pub body: Vec<u8>,
    /// Where the original goes in `body`.
    pub original_at: Option<usize>,
    /// The original's raw bytes, when `original_at` is set.
    pub original: Option<Vec<u8>>,
}

/// A queued message ready to go.
#[derive(Debug, Clone)]
pub struct Due {
    /// Row id.
    pub id: i64,
    /// Reply kind.
    pub kind: String,
    /// Case, if any.
    pub case_id: Option<String>,
    /// Envelope sender; empty for null.
    pub envelope_from: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// The message.
    pub message: Stored,
    /// Attempts so far.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: i64,
}

/// The tables an outbox row's message is read from: its rendered body and, for a forward,
/// the original it references (see [`Stored`]). A macro, so that SQL literals can share it.
macro_rules! with_message {
    () => {
        "FROM outbox o JOIN outbox_body b ON b.id = o.id
              LEFT JOIN messages m ON o.original_at IS NOT NULL AND m.id = o.message"
    };
}

/// The columns [`due_rows`] reads, and where they come from.
macro_rules! due_columns {
    () => {
        concat!(
            "SELECT o.id, o.kind, o.case_id, o.envelope_from, o.recipients, b.body, o.original_at, m.raw,
                    o.attempts, o.created_at ",
            with_message!()
        )
    };
}

/// How much of a round to take: at most `count` rows, and rows only until their messages
/// (each with its original, for a forward) add up to `bytes`. The first row is taken whatever
/// its size, so a message bigger than `bytes` still goes, in a round of its own.
#[derive(Debug, Clone, Copy)]
pub struct RoundLimit {
    /// Rows.
    pub count: usize,
    /// Bytes of message.
    pub bytes: usize,
}

/// The rows of a round, as a `WHERE` on `o.id`: of the due rows (`$due`, in the order
/// `$order`), the first `?2` (the count), cut where their sizes pass `?3` (the bytes).
/// `length()` of a blob reads its size, not its bytes, so this reads no message.
macro_rules! round_ids {
    ($due:literal, $order:literal) => {
        concat!(
            "o.id IN (SELECT id FROM (
                 SELECT id, SUM(size) OVER (ORDER BY ",
            $order,
            ") - size AS before FROM (
                     SELECT o.id AS id, o.next_attempt AS next_attempt,
                            length(b.body) + COALESCE(length(m.raw), 0) AS size ",
            with_message!(),
            " WHERE ",
            $due,
            " ORDER BY ",
            $order,
            " LIMIT ?2))
             WHERE before < ?3)"
        )
    };
}

/// The messages due at `now`, oldest first, as many as `limit` allows.
pub fn due(conn: &Connection, now: i64, limit: RoundLimit) -> Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(concat!(
        due_columns!(),
        " WHERE ",
        round_ids!(
            "o.sent_at IS NULL AND o.failed_at IS NULL AND o.next_attempt <= ?1",
            "next_attempt, id"
        ),
        " ORDER BY o.next_attempt, o.id"
    ))?;
    due_rows(&mut stmt, params![now, limit.count as i64, limit.bytes as i64])
}

/// The messages due at `now` with a row id above `after`, in id order, as many as `limit`
/// allows.
pub fn due_after(conn: &Connection, now: i64, after: i64, limit: RoundLimit) -> Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(concat!(
        due_columns!(),
        " WHERE ",
        round_ids!(
            "o.id > ?4 AND o.sent_at IS NULL AND o.failed_at IS NULL AND o.next_attempt <= ?1",
            "id"
        ),
        " ORDER BY o.id"
    ))?;
    due_rows(&mut stmt, params![now, limit.count as i64, limit.bytes as i64, after])
}

fn due_rows(stmt: &mut rusqlite::CachedStatement<'_>, params: impl rusqlite::Params) -> Result<Vec<Due>> {
    let rows = stmt.query_map(params, |r| {
        let recipients: String = r.get(4)?;
        Ok(Due {
            id: r.get(0)?,
            kind: r.get(1)?,
            case_id: r.get(2)?,
            envelope_from: r.get(3)?,
            recipients: serde_json::from_str(&recipients).unwrap_or_default(),
            message: stored_at(r, 5)?,
            attempts: r.get(8)?,
            created_at: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Row `id`'s message as stored, sent or not.
pub fn stored(conn: &Connection, id: i64) -> Result<Option<Stored>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT b.body, o.original_at, m.raw ",
        with_message!(),
        " WHERE o.id = ?1"
    ))?;
    Ok(stmt.query_row([id], |r| stored_at(r, 0)).optional()?)
}

/// The [`Stored`] in columns `i` (body), `i + 1` (original_at) and `i + 2` (the raw original).
fn stored_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Stored> {
    Ok(Stored {
        body: r.get(i)?,
        original_at: r.get::<_, Option<i64>>(i + 1)?.and_then(|at| usize::try_from(at).ok()),
        original: r.get(i + 2)?,
    })
}

/// When the next queued message becomes due, if any.
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

/// The server accepted it.
pub fn mark_sent(conn: &Connection, id: i64, at: i64) -> Result<()> {
    conn.prepare_cached("UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, last_error = '' WHERE id = ?1")?
        .execute(params![id, at])?;
    Ok(())
}

/// A transient failure: try again at `next`.
pub fn mark_retry(conn: &Connection, id: i64, next: i64, error: &str) -> Result<()> {
    conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1")?
        .execute(params![id, next, error])?;
    Ok(())
}

/// A permanent failure, or too old to retry: give up.
pub fn mark_failed(conn: &Connection, id: i64, at: i64, error: &str) -> Result<()> {
    conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1, failed_at = ?2, last_error = ?3 WHERE id = ?1")?
        .execute(params![id, at, error])?;
    Ok(())
}

/// Counts of the outbox by status: `(pending, sent, failed)`.
pub fn counts(conn: &Connection) -> Result<(i64, i64, i64)> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL),
                COUNT(*) FILTER (WHERE sent_at IS NOT NULL),
                COUNT(*) FILTER (WHERE failed_at IS NOT NULL) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}
