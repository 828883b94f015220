//! SQLite: messages, cases and their timeline, the outbox, and IMAP bookkeeping.
//!
//! One file, WAL mode, `synchronous = FULL`: a transaction that returned is on disk. The
//! schema is `schema.sql`; later versions append to `MIGRATIONS`, guarded by
//! `PRAGMA user_version`. Callers group work into transactions ([`Store::batch`]); the
//! pipeline commits many messages per transaction, each as if in a savepoint of its own, so a
//! failing message rolls back alone and a crash loses at most an uncommitted batch — which
//! the source still holds, because nothing is marked done on the server before the commit.
//!
//! This module knows SQL and nothing about mail: it stores what it is given.

pub mod cases;
pub mod outbox;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub use cases::{CaseState, CaseSummary};

use crate::classify::Threads;

/// Schema steps; step `n` takes `user_version` from `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    // 2: a forward's outbox row keeps an offset instead of a second copy of the original.
    "ALTER TABLE outbox ADD COLUMN original_at INTEGER;",
    // 3: the rendered message moves to a table of its own. SQLite rewrites a whole record when
    // any column changes, so marking a row sent rewrote its message too, overflow pages and
    // all: 12,500 sends cost ~90 MB of page writes.
    "CREATE TABLE outbox_body (
         id   INTEGER PRIMARY KEY REFERENCES outbox(id),  -- the outbox row
         body BLOB NOT NULL                               -- the rendered message
     ) STRICT;
     INSERT INTO outbox_body (id, body) SELECT id, body FROM outbox;
     ALTER TABLE outbox DROP COLUMN body;",
];

/// A store failure. Store errors are never about one message: the caller stops the batch.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer secintake.
    #[error("database schema version {found} is newer than this program knows ({known})")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Latest version we know.
        known: i64,
    },
    /// A request that makes no sense for the data (unknown case, bad transition).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Invalid(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        Store::init(conn)
    }

    /// An in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(30))?;
        // Recording one message runs some twenty distinct statements; rusqlite keeps 16.
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Savepoint (statement) journals in memory: one per batch, and one per message when a
        // batch is recorded again message by message; on disk they would cost a write for
        // every page touched twice.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StoreError::TooNew { found: version, known });
        }
        if version == known {
            return Ok(());
        }
        loop {
            // The version is read again under the write lock: two processes opening an old
            // database at once must not both run a step.
            let tx = self.batch()?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let Some(step) = usize::try_from(version).ok().and_then(|v| MIGRATIONS.get(v)) else {
                break;
            };
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The connection, for read-only queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`, so the write lock is taken up front).
    pub fn batch(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// A [`Checkpointer`] for this store's database, with this connection's own checkpoints
    /// turned off; `None` (and the store left as it was) when one cannot be started, or for a
    /// database in memory.
    pub fn checkpoint_in_background(&self) -> Option<Checkpointer> {
        let path = self.conn.path().filter(|p| !p.is_empty())?;
        let started = Checkpointer::start(Path::new(path)).and_then(|c| {
            self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            Ok(c)
        });
        match started {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("checkpointing in the writer instead of in the background: {e}");
                None
            }
        }
    }
}

/// Checkpoints the write-ahead log from a thread and connection of its own.
///
/// By default SQLite checkpoints in the commit that takes the log past 1,000 pages: the
/// writer then copies the log into the database file and waits for a second fsync, on the
/// critical path of every batch. With a checkpointer the writer's commits only append to the
/// log ([`Store::checkpoint_in_background`]), and this thread copies what is committed every
/// [`Checkpointer::EVERY`], without blocking the writer (PASSIVE). IMAP ingest of the
/// benchmark mix: 2.02-2.30 s -> 1.84-1.88 s. It pays where the writer waits and a core is
/// free (`once`, the daemon); local `ingest`, whose three threads keep both cores busy, was
/// ~20% slower with it and does without. Dropping it stops the thread.
pub struct Checkpointer {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// How often the log is checkpointed.
    pub const EVERY: Duration = Duration::from_millis(100);

    /// Starts checkpointing the database at `path`.
    pub fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let shared = stop.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*shared;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = wake
                        .wait_timeout(stopped, Checkpointer::EVERY)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    // A checkpoint already running elsewhere makes this one return busy (the
                    // first column), which is fine: the next tick catches up.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!("checkpointing the database log failed: {e}");
                    }
                }
            })
            .map_err(|e| StoreError::Invalid(format!("starting the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A message row to insert.
#[derive(Debug)]
pub struct NewMessage<'a> {
    /// Hex SHA-256 of `raw`.
    pub sha256: &'a str,
    /// `Message-ID` without brackets.
    pub message_id: Option<&'a str>,
    /// Source name (`local`, `imap:...`).
    pub source: &'a str,
    /// Position in the source (path, `UIDVALIDITY:UID`).
    pub source_ref: &'a str,
    /// When we got it.
    pub received_at: i64,
    /// The raw bytes.
    pub raw: &'a [u8],
    /// Verdict word.
    pub verdict: &'a str,
    /// Reason word.
    pub reason: Option<&'a str>,
    /// Routed project.
    pub project: Option<&'a str>,
    /// Case it belongs to.
    pub case_id: Option<&'a str>,
    /// From address.
    pub from_addr: &'a str,
    /// Subject (display only).
    pub subject: &'a str,
    /// Date header.
    pub date: Option<i64>,
    /// Signals as JSON.
    pub signals: &'a str,
}

/// The id of an earlier copy of this message, if we have one: same bytes, or same
/// Message-ID from the same source.
pub fn find_duplicate(conn: &Connection, sha256: &str, source: &str, message_id: Option<&str>) -> Result<Option<i64>> {
    let by_sha = conn
        .prepare_cached("SELECT id FROM messages WHERE sha256 = ?1")?
        .query_row([sha256], |r| r.get(0))
        .optional()?;
    if by_sha.is_some() {
        return Ok(by_sha);
    }
    let Some(mid) = message_id else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached("SELECT id FROM messages WHERE source = ?1 AND message_id = ?2")?
        .query_row(params![source, mid], |r| r.get(0))
        .optional()?)
}

/// Runs `f` inside a savepoint of the current transaction: its writes stay if it returns `Ok`
/// and are rolled back alone if it returns `Err`, which is handed back inside `Ok`. The outer
/// `Err` is the savepoint itself failing. (rusqlite's `Savepoint` prepares its two statements
/// anew every time; here they are cached, which counts at one savepoint per message.)
pub fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<Result<T>> {
    conn.prepare_cached("SAVEPOINT message")?.execute([])?;
    let result = f(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO message")?.execute([])?;
    }
    conn.prepare_cached("RELEASE message")?.execute([])?;
    Ok(result)
}

/// Inserts a message row; returns its id. Its case, if any, is created first and given here:
/// the row is never updated afterwards (an update would rewrite the raw bytes with it).
pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO messages (sha256, message_id, source, source_ref, received_at, size, raw,
                               verdict, reason, project, case_id, from_addr, subject, date, signals)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        m.sha256,
        m.message_id,
        m.source,
        m.source_ref,
        m.received_at,
        m.raw.len() as i64,
        m.raw,
        m.verdict,
        m.reason,
        m.project,
        m.case_id,
        m.from_addr,
        m.subject,
        m.date,
        m.signals,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The raw bytes of a stored message.
pub fn message_raw(conn: &Connection, id: i64) -> Result<Vec<u8>> {
    Ok(conn.query_row("SELECT raw FROM messages WHERE id = ?1", [id], |r| r.get(0))?)
}

/// IMAP bookkeeping for one folder: `(uidvalidity, last_uid)`.
pub fn mailbox_state(conn: &Connection, source: &str) -> Result<Option<(u32, u32)>> {
    Ok(conn
        .query_row(
            "SELECT uidvalidity, last_uid FROM mailbox_state WHERE source = ?1",
            [source],
            |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32)),
        )
        .optional()?)
}

/// Records the highest UID committed (and marked) for a folder, outside any transaction.
///
/// Without waiting for the disk: this write only saves work (a state lost to a crash means
/// re-reading messages that are then found to be duplicates and marked), and the next synced
/// commit makes it durable with its own: one fsync less per IMAP batch (no change measurable
/// in the benchmark beside its noise).
pub fn set_mailbox_state(conn: &Connection, source: &str, uidvalidity: u32, last_uid: u32) -> Result<()> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let written = conn
        .prepare_cached(
            "INSERT INTO mailbox_state (source, uidvalidity, last_uid) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
        )
        .and_then(|mut stmt| stmt.execute(params![source, uidvalidity as i64, last_uid as i64]));
    conn.pragma_update(None, "synchronous", "FULL")?;
    written?;
    Ok(())
}

/// [`Threads`] over an open connection or transaction.
pub struct StoreThreads<'c>(pub &'c Connection);

impl Threads for StoreThreads<'_> {
    fn case_exists(&self, case_id: &str) -> bool {
        self.0
            .prepare_cached("SELECT 1 FROM cases WHERE id = ?1")
            .and_then(|mut s| s.exists([case_id]))
            .unwrap_or(false)
    }

    fn case_of_message(&self, message_id: &str) -> Option<String> {
        let received: Option<String> = self
            .0
            .prepare_cached("SELECT case_id FROM messages WHERE message_id = ?1 AND case_id IS NOT NULL LIMIT 1")
            .and_then(|mut s| s.query_row([message_id], |r| r.get(0)).optional())
            .ok()
            .flatten();
        received.or_else(|| {
            self.0
                .prepare_cached("SELECT case_id FROM outbox WHERE rfc822_id = ?1 AND case_id IS NOT NULL LIMIT 1")
                .and_then(|mut s| s.query_row([message_id], |r| r.get(0)).optional())
                .ok()
                .flatten()
        })
    }

    fn is_offtopic_reply(&self, message_id: &str) -> bool {
        self.0
            .prepare_cached(
                "SELECT 1 FROM outbox WHERE rfc822_id = ?1
                 AND kind IN ('reject_bug_report', 'reject_question', 'reject_scanner_output')",
            )
            .and_then(|mut s| s.exists([message_id]))
            .unwrap_or(false)
    }
}

/// Now, as Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
