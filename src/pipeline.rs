//! The unit of work: raw message -> stored message, case change and queued mail, committed
//! together.
//!
//! [`Pipeline::process_batch`] takes messages from any source and records each inside one
//! write transaction, as if with a savepoint per message (see `Pipeline::record_in`): a
//! message that fails rolls back alone and is reported as not committed, so its source does
//! not mark it done. The raw bytes are stored in the same transaction as everything they
//! cause, and nothing leaves the machine before that transaction commits (mail waits in the
//! outbox; IMAP flags wait for the `Ok` outcome of their message). The same bytes, or the same Message-ID from the same source, are
//! recognised and skipped, so re-reading a source never makes a second case.
//!
//! The store has one writer. Work that others must write (delivery results, for one) joins
//! a batch's transaction as a [`Rider`] rather than opening a second writer.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::classify::{Classifier, Kind, Verdict, excerpt};
use crate::config::Config;
use crate::parse::{self, Inbound};
use crate::reply::{CaseRef, Composer, Outgoing, ReplyKind, Templates};
use crate::store::{self, Store, StoreError, StoreThreads, cases, outbox};

/// One message from a source.
#[derive(Debug, Clone)]
pub struct Item {
    /// Source name: `local`, or `imap:user@host/folder`.
    pub source: String,
    /// Where in the source: a path, or `UIDVALIDITY:UID`.
    pub source_ref: String,
    /// The raw message.
    pub raw: Vec<u8>,
}

/// What happened to one message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stored and decided.
    Recorded(Recorded),
    /// Already stored earlier (row id of the first copy).
    Duplicate {
        /// The earlier copy.
        of: i64,
    },
}

/// A newly recorded message.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Row id.
    pub message: i64,
    /// The decision.
    pub verdict: Verdict,
    /// The case created or joined.
    pub case: Option<String>,
    /// Mail queued because of it.
    pub queued: Vec<ReplyKind>,
    /// Automatic replies not sent because of the per-address limit or a missing address.
    pub withheld: Vec<(ReplyKind, &'static str)>,
}

/// Messages prepared ahead of the writer ([`Pipeline::process_batch`],
/// [`Pipeline::process_stream`]): enough that the preparing thread goes on working while the
/// writer commits (an fsync and a checkpoint: 10-30 ms, some hundred messages' preparing).
/// With 8, the two threads took turns, each idle a third of the time.
const PREPARED_AHEAD: usize = 256;

/// The raw bytes of the messages prepared ahead of the writer, at most (a bigger message
/// waits until the writer has taken all before it): a run of 2 MB messages holds little
/// memory.
const PREPARED_AHEAD_BYTES: usize = 4 << 20;

/// The bytes prepared ahead of the writer, bounded by [`PREPARED_AHEAD_BYTES`].
#[derive(Default)]
struct Budget {
    state: Mutex<BudgetState>,
    changed: Condvar,
}

#[derive(Default)]
struct BudgetState {
    bytes: usize,
    /// The writer has stopped; nothing waits for it any more.
    closed: bool,
}

impl Budget {
    fn state(&self) -> MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `n` more bytes fit, and takes them; `false` when the writer has stopped.
    fn take(&self, n: usize) -> bool {
        let mut s = self.state();
        while !s.closed && s.bytes > 0 && s.bytes + n > PREPARED_AHEAD_BYTES {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.bytes += n;
        !s.closed
    }

    /// The writer has taken `n` bytes' worth.
    fn give(&self, n: usize) {
        let mut s = self.state();
        s.bytes = s.bytes.saturating_sub(n);
        self.changed.notify_one();
    }

    fn close(&self) {
        self.state().closed = true;
        self.changed.notify_all();
    }
}

/// Closes a [`Budget`] when the writer returns or panics, so the preparing thread does not
/// wait for it forever.
struct CloseOnDrop<'b>(&'b Budget);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the writer receives from [`prepare_ahead`]: the prepared messages in order, each
/// handing its bytes back to the [`Budget`] as it is taken.
struct Ahead<'b, P> {
    recv: std::sync::mpsc::IntoIter<P>,
    budget: &'b Budget,
    size: fn(&P) -> usize,
}

impl<P> Iterator for Ahead<'_, P> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        let p = self.recv.next()?;
        self.budget.give((self.size)(&p));
        Some(p)
    }
}

/// The messages of one transaction, recorded without a savepoint each until one fails (see
/// [`Pipeline::record_in`]); a savepoint taken when the batch begins marks where to roll back.
struct Batch<'c> {
    conn: &'c Connection,
    /// A message failed: from now on each is recorded in its own savepoint.
    careful: bool,
}

impl<'c> Batch<'c> {
    fn begin(conn: &'c Connection) -> Result<Batch<'c>, StoreError> {
        conn.prepare_cached("SAVEPOINT batch")?.execute([])?;
        Ok(Batch { conn, careful: false })
    }

    /// Undoes everything the batch wrote, and records carefully from now on.
    fn restart(&mut self) -> Result<(), StoreError> {
        self.conn.prepare_cached("ROLLBACK TO batch")?.execute([])?;
        self.careful = true;
        Ok(())
    }

    fn end(self) -> Result<(), StoreError> {
        self.conn.prepare_cached("RELEASE batch")?.execute([])?;
        Ok(())
    }
}

/// A message hashed, parsed and classified as far as it can be without the store.
struct Prepared {
    sha256: String,
    msg: Inbound,
    verdict: Verdict,
}

/// Work that rides along in each batch's transaction: [`Rider::ride`] runs in it just before
/// the commit, [`Rider::committed`] just after. The store has one writer; this is how work
/// running beside the pipeline gets written by it, without a second writer contending for the
/// lock (see `send::Courier`, which records deliveries made while a mailbox is read).
pub trait Rider: Send {
    /// Writes in the batch's transaction; an error fails the batch.
    fn ride(&mut self, tx: &Connection) -> Result<(), StoreError>;
    /// The batch has committed.
    fn committed(&mut self);
}

/// No work rides along.
pub struct NoRider;

impl Rider for NoRider {
    fn ride(&mut self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }

    fn committed(&mut self) {}
}

/// Parse, classify, decide and record, for one config.
pub struct Pipeline {
    config: Config,
    classifier: Classifier,
    templates: Templates,
}

impl Pipeline {
    /// Compiles the rules and templates of `config`.
    pub fn new(config: Config, templates: Templates) -> Pipeline {
        Pipeline {
            classifier: Classifier::new(&config),
            config,
            templates,
        }
    }

    /// The config this pipeline runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The classifier (for dry runs).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Records `items` in one transaction. Each result is the outcome of the item at the same
    /// index; an `Err` item was rolled back and must not be marked done at its source. An
    /// `Err` of the whole call means nothing was committed.
    ///
    /// The store is single-writer, but most of the work per message is not: hashing, parsing
    /// and classifying (`Pipeline::prepare`) run on the calling thread while a second thread
    /// records the messages prepared so far. (That way round, the calling thread stays the
    /// one whose regex caches stay warm from batch to batch.)
    pub fn process_batch(
        &self,
        store: &mut Store,
        items: &[Item],
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        self.process_batch_with(store, items, &mut NoRider)
    }

    /// As [`Pipeline::process_batch`], with `rider` in the transaction.
    pub fn process_batch_with(
        &self,
        store: &mut Store,
        items: &[Item],
        rider: &mut dyn Rider,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        if items.len() < 2 {
            // One message (the IDLE case): not worth a thread.
            let prepared = items.iter().map(|item| (item, self.prepare(item)));
            return self.record_batch(store, prepared, items.len(), rider);
        }
        prepare_ahead(
            items,
            |item| (item, self.prepare(item)),
            |(item, _)| item.raw.len(),
            |prepared| self.record_batch(store, prepared, items.len(), rider),
        )
    }

    /// Records a stream of items in transactions of [`crate::BATCH_MESSAGES`] messages or
    /// [`crate::BATCH_BYTES`] bytes, calling `report` for each item, in order, once its
    /// transaction has committed (and for each error of the source, in its place). Stops at
    /// the first store failure.
    ///
    /// As in [`Pipeline::process_batch`], the calling thread reads and prepares while a
    /// writer thread records; here the writer lives for the whole stream and records each
    /// message as it arrives, so both threads work all the time, commits included.
    pub fn process_stream<I, E>(
        &self,
        store: &mut Store,
        items: I,
        report: impl FnMut(crate::Report<'_, E>) + Send,
        rider: &mut dyn Rider,
    ) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Result<Item, E>>,
        E: Send,
    {
        prepare_ahead(
            items,
            |item| {
                item.map(|item| {
                    let p = self.prepare(&item);
                    (item, p)
                })
            },
            |prepared| prepared.as_ref().map_or(0, |(item, _)| item.raw.len()),
            |prepared| self.write_stream(store, prepared, report, rider),
        )
    }

    fn write_stream<E>(
        &self,
        store: &mut Store,
        mut recv: impl Iterator<Item = Result<(Item, Prepared), E>>,
        mut report: impl FnMut(crate::Report<'_, E>),
        rider: &mut dyn Rider,
    ) -> Result<(), StoreError> {
        // Each message is recorded as it arrives, in a transaction left open until the batch
        // is full: waiting for a whole batch before recording any of it made the two threads
        // take turns (the preparing thread can run only so far ahead, see PREPARED_AHEAD). The
        // write lock is then held while the batch is read, not only while it is recorded;
        // another writer (a daemon on the same database) waits, within its busy timeout.
        let mut order: Vec<Result<Item, E>> = Vec::new();
        let mut results: Vec<Result<Outcome, StoreError>> = Vec::new();
        loop {
            // One batch: its transaction opens when its first entry arrives.
            let Some(first) = recv.next() else {
                return Ok(());
            };
            let tx = store.batch()?;
            let mut batch = Batch::begin(&tx)?;
            let mut next = Some(first);
            let mut bytes = 0;
            let end = loop {
                match next.take() {
                    Some(Ok((item, p))) => {
                        bytes += item.raw.len();
                        let earlier = order.iter().filter_map(|o| o.as_ref().ok());
                        self.record_in(&mut batch, &mut results, earlier, &item, p)?;
                        order.push(Ok(item));
                    }
                    Some(Err(e)) => order.push(Err(e)),
                    None => break true,
                }
                // Source errors count too, so that a run of them is reported without delay.
                if order.len() >= crate::BATCH_MESSAGES || bytes >= crate::BATCH_BYTES {
                    break false;
                }
                next = recv.next();
            };
            batch.end()?;
            rider.ride(&tx)?;
            tx.commit()?;
            rider.committed();
            let mut done = results.iter();
            for entry in order.drain(..) {
                match entry {
                    Err(e) => report(Err(e)),
                    Ok(item) => {
                        if let Some(r) = done.next() {
                            report(Ok((&item, r)));
                        }
                    }
                }
            }
            results.clear();
            if end {
                return Ok(());
            }
        }
    }

    /// Records prepared messages in one transaction.
    fn record_batch<'a>(
        &self,
        store: &mut Store,
        prepared: impl Iterator<Item = (&'a Item, Prepared)>,
        len: usize,
        rider: &mut dyn Rider,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let mut tx = store.batch()?;
        let results = self.record_all(&mut tx, prepared, len)?;
        rider.ride(&tx)?;
        tx.commit()?;
        rider.committed();
        Ok(results)
    }

    /// The store-independent work for one message.
    fn prepare(&self, item: &Item) -> Prepared {
        let msg = parse::parse(&item.raw);
        let verdict = self.classifier.prepare(&msg);
        Prepared {
            sha256: hex::encode(Sha256::digest(&item.raw)),
            msg,
            verdict,
        }
    }

    fn record_all<'a>(
        &self,
        tx: &mut rusqlite::Transaction<'_>,
        prepared: impl Iterator<Item = (&'a Item, Prepared)>,
        len: usize,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let mut results = Vec::with_capacity(len);
        let mut seen: Vec<&Item> = Vec::with_capacity(len);
        let mut batch = Batch::begin(tx)?;
        for (item, p) in prepared {
            self.record_in(&mut batch, &mut results, seen.iter().copied(), item, p)?;
            seen.push(item);
        }
        batch.end()?;
        Ok(results)
    }

    /// Records one message of `batch`, pushing its result onto `results`, which holds the
    /// results of `earlier` (the batch's messages so far, in order).
    ///
    /// A savepoint per message costs its statements and a copy of every page the message
    /// touches (together ~10% of recording), and messages hardly ever fail, so they are
    /// recorded without one. When one fails, the batch rolls back to its start and is
    /// recorded again, every message (this one, the earlier ones prepared anew, the later
    /// ones) in its own savepoint: the failing message then rolls back alone, exactly as if
    /// savepoints had been used all along.
    fn record_in<'i>(
        &self,
        batch: &mut Batch<'_>,
        results: &mut Vec<Result<Outcome, StoreError>>,
        earlier: impl Iterator<Item = &'i Item>,
        item: &Item,
        p: Prepared,
    ) -> Result<(), StoreError> {
        if batch.careful {
            results.push(self.record_one(batch.conn, item, p)?);
            return Ok(());
        }
        match self.process_one(batch.conn, item, p, SystemTime::now()) {
            Ok(outcome) => results.push(Ok(outcome)),
            Err(_) => {
                batch.restart()?;
                results.clear();
                for e in earlier {
                    results.push(self.record_one(batch.conn, e, self.prepare(e))?);
                }
                results.push(self.record_one(batch.conn, item, self.prepare(item))?);
            }
        }
        Ok(())
    }

    /// Records one message in its own savepoint: a message that fails rolls back alone.
    fn record_one(&self, tx: &Connection, item: &Item, p: Prepared) -> Result<Result<Outcome, StoreError>, StoreError> {
        let result = store::in_savepoint(tx, |conn| self.process_one(conn, item, p, SystemTime::now()))?;
        if let Err(e) = &result {
            tracing::error!(source_ref = %item.source_ref, error = %e, "message not recorded");
        }
        Ok(result)
    }

    fn process_one(&self, conn: &Connection, item: &Item, p: Prepared, now: SystemTime) -> Result<Outcome, StoreError> {
        let Prepared { sha256, msg, verdict } = p;
        if let Some(of) = store::find_duplicate(conn, &sha256, &item.source, msg.message_id.as_deref())? {
            return Ok(Outcome::Duplicate { of });
        }
        let verdict = self.classifier.finish(&msg, &StoreThreads(conn), verdict);
        let at = unix(now);
        let signals = serde_json::to_string(&verdict.signals).unwrap_or_else(|_| "[]".into());
        let from_addr = msg.from.as_ref().map(|f| excerpt(&f.address, 200)).unwrap_or_default();
        let subject = excerpt(&msg.subject, 300);
        // The case the message belongs to, known before the message row is written: setting it
        // afterwards would rewrite the row, raw bytes and all.
        let case_id = match verdict.verdict {
            Kind::Followup => verdict.case.clone(),
            Kind::Report => {
                let year = time::OffsetDateTime::from_unix_timestamp(at)
                    .map(|d| d.year())
                    .unwrap_or(1970);
                Some(cases::create(
                    conn,
                    &cases::NewCase {
                        prefix: &self.config.triage.case_prefix,
                        year,
                        project: verdict
                            .project
                            .as_deref()
                            .and_then(|p| self.config.project(p))
                            .map(|p| p.id.as_str()),
                        reporter: &from_addr,
                        subject: &subject,
                        appeal: verdict.reason == Some(crate::classify::Reason::Appeal),
                        signals: &signals,
                        at,
                    },
                )?)
            }
            _ => None,
        };
        let message = store::insert_message(
            conn,
            &store::NewMessage {
                sha256: &sha256,
                message_id: msg.message_id.as_deref(),
                source: &item.source,
                source_ref: &item.source_ref,
                received_at: at,
                raw: &item.raw,
                verdict: verdict.verdict.as_str(),
                reason: verdict.reason.map(|r| r.as_str()),
                project: verdict.project.as_deref(),
                case_id: case_id.as_deref(),
                from_addr: &from_addr,
                subject: &subject,
                date: msg.date,
                signals: &signals,
            },
        )?;
        let mut rec = Recorded {
            message,
            verdict,
            case: None,
            queued: Vec::new(),
            withheld: Vec::new(),
        };
        let composer = Composer::new(&self.config, &self.templates);
        match rec.verdict.verdict {
            Kind::Ignore => {}
            Kind::Followup => {
                let Some(case_id) = case_id else {
                    return Ok(Outcome::Recorded(rec));
                };
                let detail = format!("from {from_addr}: {subject}");
                cases::event(conn, &case_id, at, "followup", &detail, Some(message))?;
                let project_id = cases::get(conn, &case_id)?.and_then(|c| c.project);
                let project = project_id.as_deref().and_then(|p| self.config.project(p));
                let team = project
                    .map(|p| p.team.as_slice())
                    .unwrap_or(&self.config.triage.default_team);
                let from_team = msg.from.as_ref().is_some_and(|f| {
                    team.iter()
                        .any(|t| t.to_string().eq_ignore_ascii_case(f.address.trim()))
                });
                if !from_team {
                    let case = CaseRef {
                        id: &case_id,
                        project,
                        appeal: false,
                    };
                    if let Some(out) =
                        composer.forward(ReplyKind::Followup, &item.raw, &msg, &rec.verdict, &case, team, now)
                    {
                        self.enqueue(conn, &out, Some(&case_id), message, at)?;
                        rec.queued.push(out.kind);
                    }
                }
                rec.case = Some(case_id);
            }
            Kind::RejectFormat | Kind::RejectOfftopic => {
                if let Some(kind) = rec.verdict.reason.and_then(ReplyKind::for_reason) {
                    self.auto_reply(conn, &composer, kind, &msg, &mut rec, None, at, now)?;
                }
            }
            Kind::Report => {
                let Some(case_id) = case_id else {
                    return Ok(Outcome::Recorded(rec));
                };
                let project = rec.verdict.project.as_deref().and_then(|p| self.config.project(p));
                let appeal = rec.verdict.reason == Some(crate::classify::Reason::Appeal);
                let detail = match (project, appeal) {
                    (Some(p), false) => format!("routed to {}", p.id),
                    (Some(p), true) => format!("appeal; routed to {}", p.id),
                    (None, false) => "no project matched; default triage team".to_string(),
                    (None, true) => "appeal; no project matched; default triage team".to_string(),
                };
                cases::event(conn, &case_id, at, "reported", &detail, Some(message))?;
                let case = CaseRef {
                    id: &case_id,
                    project,
                    appeal,
                };
                self.auto_reply(conn, &composer, ReplyKind::Ack, &msg, &mut rec, Some(&case), at, now)?;
                let team = project
                    .map(|p| p.team.as_slice())
                    .unwrap_or(&self.config.triage.default_team);
                if let Some(out) = composer.forward(ReplyKind::Forward, &item.raw, &msg, &rec.verdict, &case, team, now)
                {
                    self.enqueue(conn, &out, Some(&case_id), message, at)?;
                    rec.queued.push(out.kind);
                }
                rec.case = Some(case_id);
            }
        }
        Ok(Outcome::Recorded(rec))
    }

    /// Queues an automatic reply unless the sender has no usable address or has had its
    /// share of automatic replies today.
    #[allow(clippy::too_many_arguments)]
    fn auto_reply(
        &self,
        conn: &Connection,
        composer: &Composer<'_>,
        kind: ReplyKind,
        msg: &Inbound,
        rec: &mut Recorded,
        case: Option<&CaseRef<'_>>,
        at: i64,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let Some(out) = composer.auto_reply(kind, msg, &rec.verdict, case, now) else {
            rec.withheld.push((kind, "no usable reply address"));
            if let Some(c) = case {
                cases::event(conn, c.id, at, "no_reply", "no usable reply address", Some(rec.message))?;
            }
            return Ok(());
        };
        let rate_key = out
            .recipients
            .first()
            .map(|a| a.to_string().to_ascii_lowercase())
            .unwrap_or_default();
        let day = Duration::from_secs(86_400).as_secs() as i64;
        let sent = outbox::auto_replies_since(conn, &rate_key, at - day)?;
        if sent >= self.config.triage.auto_replies_per_day {
            tracing::warn!(recipient = %rate_key, kind = kind.as_str(), "automatic reply withheld: daily limit reached");
            rec.withheld.push((kind, "daily automatic-reply limit reached"));
            if let Some(c) = case {
                cases::event(conn, c.id, at, "rate_limited", kind.as_str(), Some(rec.message))?;
            }
            return Ok(());
        }
        self.enqueue_keyed(conn, &out, case.map(|c| c.id), rec.message, at, &rate_key)?;
        rec.queued.push(kind);
        Ok(())
    }

    fn enqueue(
        &self,
        conn: &Connection,
        out: &Outgoing,
        case: Option<&str>,
        message: i64,
        at: i64,
    ) -> Result<i64, StoreError> {
        self.enqueue_keyed(conn, out, case, message, at, "")
    }

    fn enqueue_keyed(
        &self,
        conn: &Connection,
        out: &Outgoing,
        case: Option<&str>,
        message: i64,
        at: i64,
        rate_key: &str,
    ) -> Result<i64, StoreError> {
        let recipients: Vec<String> = out.recipients.iter().map(|a| a.to_string()).collect();
        let envelope_from = out.envelope_from.as_ref().map(|a| a.to_string()).unwrap_or_default();
        outbox::enqueue(
            conn,
            &outbox::NewOutgoing {
                kind: out.kind.as_str(),
                auto_reply: out.kind.is_auto_reply(),
                case_id: case,
                message: Some(message),
                rfc822_id: &out.message_id,
                envelope_from: &envelope_from,
                recipients: &recipients,
                rate_key,
                body: &out.bytes,
                original_at: out.original_at,
                at,
            },
        )
    }
}

/// Runs `write` on a scoped writer thread over what this thread makes of `items` with
/// `prepare`, at most [`PREPARED_AHEAD`] messages and [`PREPARED_AHEAD_BYTES`] bytes (as `size`
/// counts them) ahead of it. A writer that stops early (a store error) stops the preparing
/// too.
fn prepare_ahead<T, P: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    prepare: impl Fn(T) -> P,
    size: fn(&P) -> usize,
    write: impl FnOnce(Ahead<'_, P>) -> R + Send,
) -> R {
    let budget = Budget::default();
    std::thread::scope(|s| {
        let (send, recv) = std::sync::mpsc::sync_channel(PREPARED_AHEAD);
        let budget = &budget;
        let writer = s.spawn(move || {
            let _closing = CloseOnDrop(budget);
            write(Ahead {
                recv: recv.into_iter(),
                budget,
                size,
            })
        });
        for item in items {
            let p = prepare(item);
            if !budget.take(size(&p)) || send.send(p).is_err() {
                break; // the writer stopped on an error
            }
        }
        drop(send);
        match writer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MB: usize = 1 << 20;

    #[test]
    fn the_preparing_thread_stays_within_its_byte_budget() {
        // 1 MB messages, a writer slower than the preparing thread: without the budget the
        // preparing thread would run PREPARED_AHEAD (256) messages ahead.
        let prepared = AtomicUsize::new(0);
        let mut most_ahead = 0;
        let taken = prepare_ahead(
            0..40,
            |i| {
                prepared.fetch_add(1, Ordering::SeqCst);
                (i, MB)
            },
            |&(_, size)| size,
            |ahead| {
                let mut taken = Vec::new();
                for (n, (i, _)) in ahead.enumerate() {
                    std::thread::sleep(Duration::from_millis(2));
                    // Prepared but not yet taken, this one excluded.
                    most_ahead = most_ahead.max(prepared.load(Ordering::SeqCst) - n - 1);
                    taken.push(i);
                }
                taken
            },
        );
        assert_eq!(taken, (0..40).collect::<Vec<_>>(), "all of them, in order");
        // The budget holds PREPARED_AHEAD_BYTES; one more message may be prepared while the
        // preparing thread waits for room.
        assert!(
            most_ahead * MB <= PREPARED_AHEAD_BYTES + MB,
            "{most_ahead} MB prepared ahead of the writer"
        );
    }

    #[test]
    fn a_message_bigger_than_the_budget_still_goes_through() {
        let sizes = [PREPARED_AHEAD_BYTES * 3, 10, PREPARED_AHEAD_BYTES + 1, 10];
        let taken = prepare_ahead(sizes, |size| size, |&size| size, |ahead| ahead.collect::<Vec<_>>());
        assert_eq!(taken, sizes);
    }

    #[test]
    fn a_writer_that_stops_releases_a_waiting_preparer() {
        // The writer stops (a store error) without taking anything, while the preparing
        // thread has filled the budget and waits for room: the call must return, not wait
        // forever for room that will never be given back.
        let prepared = AtomicUsize::new(0);
        let taken = prepare_ahead(
            0..1000,
            |i| {
                prepared.fetch_add(1, Ordering::SeqCst);
                (i, MB)
            },
            |&(_, size)| size,
            |_ahead| {
                std::thread::sleep(Duration::from_millis(50));
                0
            },
        );
        assert_eq!(taken, 0);
        let fits = PREPARED_AHEAD_BYTES / MB;
        assert_eq!(
            prepared.load(Ordering::SeqCst),
            fits + 1,
            "the preparing thread stopped"
        );
    }
}
