//! The long-running service (`run`) and the single pass (`once`).
//!
//! `run` starts two tasks over one loaded config: the fetch loop (IMAP with IDLE or polling,
//! or a local Maildir) and the outbox loop. They share nothing but the database file (each
//! has its own connection; SQLite WAL serialises writers) and a [`Notify`] with which the
//! fetch loop wakes the outbox as soon as a batch has queued mail.
//!
//! Control comes from outside as [`Control`] messages (main.rs turns SIGTERM/SIGINT/SIGHUP
//! into them): `Shutdown` lets both tasks finish what they hold — the batch being
//! committed, the mail being submitted — and returns; `Reload` re-runs the start-up path
//! ([`load`]) and, only if that succeeds, stops the tasks and starts them again on the new
//! config. A bad new config is logged and the running one kept.
//!
//! Reconnects use exponential backoff with jitter; a failing server is logged once when it
//! fails and once when it is back, not at every attempt.
//!
//! Reading a folder goes batch by batch: while one batch is recorded, the session marks the
//! previous one done and fetches the next. The folder's saved position moves past a batch only
//! once it is marked, so a batch committed but not marked is read again (as duplicates) and
//! marked on the next pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{Config, Imap, Mailbox};
use crate::fetch::imap::{self, FetchError, ImapSession, ImapSource, Selected};
use crate::fetch::local::Maildir;
use crate::pipeline::{Item, Outcome, Pipeline};
use crate::reply::Templates;
use crate::send;
use crate::store::{self, Store, outbox};

/// What the outside world asks of a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read config and templates; keep the old ones if the new ones are bad.
    Reload,
    /// Finish the work in hand and stop.
    Shutdown,
}

/// Reads and validates a config file and its templates: what every command starts with.
pub fn load_config(path: &Path) -> anyhow::Result<(Config, Templates)> {
    let config = Config::load(path)?;
    let templates = Templates::load(config.templates_dir.as_deref())
        .map_err(|errors| anyhow::anyhow!("template problems:\n  {}", errors.join("\n  ")))?;
    Ok((config, templates))
}

/// The start-up path of `run` and `once`: [`load_config`], then open (and migrate) the
/// database once so a bad path fails now, not in a task.
pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
    let (config, templates) = load_config(path)?;
    Store::open(&config.database).with_context(|| format!("opening {}", config.database.display()))?;
    Ok(Pipeline::new(config, templates))
}

/// Runs until `Control::Shutdown` (or the sender is dropped).
pub async fn run(path: PathBuf, mut control: mpsc::Receiver<Control>) -> anyhow::Result<()> {
    let mut pipeline = Arc::new(load(&path)?);
    loop {
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let fetch = tokio::spawn(fetch_loop(pipeline.clone(), stop_rx.clone(), wake.clone()));
        let send = tokio::spawn(outbox_loop(pipeline.clone(), stop_rx, wake));
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        tracing::info!(config = %path.display(), "secintake running");
        let next = loop {
            match control.recv().await {
                None | Some(Control::Shutdown) => break None,
                Some(Control::Reload) => match load(&path) {
                    Ok(p) => break Some(p),
                    Err(e) => tracing::error!("reload refused, keeping the running config: {e:#}"),
                },
            }
        };
        let _ = sd_notify::notify(
            false,
            &[if next.is_some() {
                sd_notify::NotifyState::Reloading
            } else {
                sd_notify::NotifyState::Stopping
            }],
        );
        let _ = stop_tx.send(true);
        let _ = fetch.await;
        let _ = send.await;
        match next {
            None => {
                tracing::info!("secintake stopped");
                return Ok(());
            }
            Some(p) => {
                tracing::info!("configuration reloaded");
                pipeline = Arc::new(p);
            }
        }
    }
}

/// Totals of one `once` pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Messages recorded.
    pub recorded: usize,
    /// Messages seen before.
    pub duplicates: usize,
    /// Messages that could not be recorded (left on the server for the next pass).
    pub errors: usize,
    /// The mailbox could not be read.
    pub fetch_failed: bool,
    /// Outbox results.
    pub mail: send::DrainStats,
    /// Time spent reading and recording the mailbox.
    pub fetch_time: Duration,
    /// Time spent delivering the outbox.
    pub send_time: Duration,
}

impl PassStats {
    /// Whether anything failed (for the exit code).
    pub fn failed(&self) -> bool {
        self.fetch_failed || self.errors > 0 || self.mail.failed > 0 || self.mail.deferred > 0
    }
}

/// One pass: everything waiting in the mailbox, then everything due in the outbox.
pub async fn once(pipeline: &Pipeline) -> anyhow::Result<PassStats> {
    let mut stats = PassStats::default();
    let mut store = Store::open(&pipeline.config().database)?;
    let _checkpoints = store.checkpoint_in_background();
    let wake = Notify::new();
    let started = std::time::Instant::now();
    let r = match &pipeline.config().mailbox {
        Mailbox::Imap(cfg) => {
            let source = ImapSource::new(cfg.clone());
            match source.session().await {
                Ok((mut session, sel)) => {
                    let r = drain_imap(pipeline, &source, &mut session, &sel, &mut store, &wake, &mut stats).await;
                    let _ = session.logout().await;
                    r
                }
                Err(e) => Err(e),
            }
        }
        Mailbox::Maildir { path } => drain_maildir(pipeline, path, &mut store, &mut stats).map_err(FetchError::from),
    };
    if let Err(e) = r {
        tracing::error!("reading the mailbox failed: {e}");
        stats.fetch_failed = true;
    }
    stats.fetch_time = started.elapsed();
    let started = std::time::Instant::now();
    let transport = send::Transport::from_config(pipeline.config())?;
    let policy = send::RetryPolicy::from_config(pipeline.config());
    stats.mail = send::drain(&mut store, &transport, &policy).await?;
    stats.send_time = started.elapsed();
    Ok(stats)
}

async fn fetch_loop(pipeline: Arc<Pipeline>, mut stop: watch::Receiver<bool>, wake: Arc<Notify>) {
    let mut store = match Store::open(&pipeline.config().database) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("fetch loop cannot open the database: {e}");
            return;
        }
    };
    // The fetch loop is the big writer; the outbox loop's small commits keep SQLite's own
    // checkpoints, which find little to do.
    let _checkpoints = store.checkpoint_in_background();
    match &pipeline.config().mailbox {
        Mailbox::Imap(cfg) => imap_loop(&pipeline, cfg, &mut store, &mut stop, &wake).await,
        Mailbox::Maildir { path } => loop {
            let mut stats = PassStats::default();
            match drain_maildir(&pipeline, path, &mut store, &mut stats) {
                Ok(()) if stats.recorded > 0 => wake.notify_one(),
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(path = %path.display(), "reading the Maildir failed: {e}")
                }
            }
            if wait_or_stop(&mut stop, Duration::from_secs(5)).await {
                return;
            }
        },
    }
}

async fn imap_loop(
    pipeline: &Pipeline,
    cfg: &Imap,
    store: &mut Store,
    stop: &mut watch::Receiver<bool>,
    wake: &Notify,
) {
    let source = ImapSource::new(cfg.clone());
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        if *stop.borrow() {
            return;
        }
        let result = async {
            let (session, sel) = source.session().await?;
            if backoff.failures > 0 {
                tracing::info!(host = %cfg.host, attempts = backoff.failures, "IMAP connection is back");
            } else {
                tracing::info!(host = %cfg.host, folder = %cfg.folder, exists = sel.exists, idle = sel.idle, "IMAP connected");
            }
            backoff.reset();
            serve(pipeline, &source, session, &sel, store, stop, wake).await
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                let delay = backoff.next();
                if backoff.failures == 1 {
                    tracing::warn!(host = %cfg.host, "IMAP session ended: {e}; reconnecting with backoff");
                } else {
                    tracing::debug!(host = %cfg.host, attempt = backoff.failures, ?delay, "IMAP still unavailable: {e}");
                }
                if wait_or_stop(stop, delay).await {
                    return;
                }
            }
        }
    }
}

/// Drains, then waits for more (IDLE or polling), until stopped or the connection fails.
async fn serve(
    pipeline: &Pipeline,
    source: &ImapSource,
    mut session: ImapSession,
    sel: &Selected,
    store: &mut Store,
    stop: &mut watch::Receiver<bool>,
    wake: &Notify,
) -> Result<(), FetchError> {
    let cfg = source.config();
    loop {
        let mut stats = PassStats::default();
        drain_imap(pipeline, source, &mut session, sel, store, wake, &mut stats).await?;
        if *stop.borrow() {
            let _ = session.logout().await;
            return Ok(());
        }
        if sel.idle {
            let mut watcher = stop.clone();
            let stopped_signal = async move {
                while !*watcher.borrow() {
                    if watcher.changed().await.is_err() {
                        break;
                    }
                }
            };
            let (back, end) = imap::idle(session, cfg.idle_timeout, stopped_signal).await?;
            session = back;
            if end == imap::IdleEnd::NewData {
                tracing::debug!("IDLE: the server announced new mail");
            }
            if end == imap::IdleEnd::Stopped {
                let _ = session.logout().await;
                return Ok(());
            }
        } else {
            if wait_or_stop(stop, cfg.poll_interval).await {
                let _ = session.logout().await;
                return Ok(());
            }
            session.noop().await?;
        }
    }
}

/// Fetches and records everything above the last committed UID, batch by batch.
async fn drain_imap(
    pipeline: &Pipeline,
    source: &ImapSource,
    session: &mut ImapSession,
    sel: &Selected,
    store: &mut Store,
    wake: &Notify,
    stats: &mut PassStats,
) -> Result<(), FetchError> {
    let cfg = source.config();
    let mut last = match store::mailbox_state(store.conn(), &source.source)? {
        Some((v, l)) if v == sel.uidvalidity => l,
        Some((v, _)) => {
            tracing::warn!(old = v, new = sel.uidvalidity, folder = %cfg.folder, "UIDVALIDITY changed: rescanning the folder");
            0
        }
        None => 0,
    };
    let handle = tokio::runtime::Handle::current();
    loop {
        let uids = imap::new_uids(session, last).await?;
        if uids.is_empty() {
            return Ok(());
        }
        // One message is a batch of its own whatever its size: no need to ask for sizes on the
        // IDLE path, where new mail comes one message at a time.
        let chunks = match uids.as_slice() {
            [one] => vec![vec![*one]],
            _ => imap::batches(
                &imap::sizes(session, &uids).await?,
                cfg.batch_size as usize,
                crate::BATCH_BYTES,
            ),
        };
        let mut fetched = match chunks.first() {
            Some(first) => imap::fetch_raw(session, first).await?,
            None => return Ok(()),
        };
        // Done on the server, once their batch committed: marked while the next batch records.
        let mut to_mark: Vec<u32> = Vec::new();
        // The last UID of the batch in `to_mark`. It becomes the folder's saved state only
        // once that batch is marked: a batch committed but not marked (the session failed)
        // is then read again on the next pass, found to be a duplicate, and marked.
        let mut to_mark_last = last;
        for (i, chunk) in chunks.iter().enumerate() {
            let uids_fetched: Vec<u32> = fetched.iter().map(|(u, _)| *u).collect();
            let items: Vec<Item> = std::mem::take(&mut fetched)
                .into_iter()
                .map(|(uid, raw)| Item {
                    source: source.source.clone(),
                    source_ref: format!("{}:{uid}", sel.uidvalidity),
                    raw,
                })
                .collect();
            let next = chunks.get(i + 1).map(Vec::as_slice);
            let marking = std::mem::take(&mut to_mark);
            // While this batch is recorded, the session marks the last batch done and
            // fetches the next one: the IMAP round trips overlap the recording instead of
            // adding to it. Fetching uses BODY.PEEK and marks nothing, so a batch that then
            // fails to record is simply read again on the next pass.
            let (results, network) = tokio::task::block_in_place(|| {
                std::thread::scope(|s| {
                    let io = s.spawn(|| {
                        handle.block_on(async {
                            imap::mark_done(session, cfg, sel, &marking).await?;
                            match next {
                                Some(next) => imap::fetch_raw(session, next).await,
                                None => Ok(Vec::new()),
                            }
                        })
                    });
                    let results = pipeline.process_batch(store, &items);
                    let network = io.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                    (results, network)
                })
            });
            let results = results?;
            let mut done = Vec::with_capacity(items.len());
            let mut first_failed = None;
            for ((uid, item), r) in uids_fetched.iter().zip(&items).zip(&results) {
                log_outcome(*uid, item, r, stats);
                match r {
                    Ok(_) => done.push(*uid),
                    Err(_) => {
                        first_failed.get_or_insert(*uid);
                    }
                }
            }
            let chunk_max = chunk.last().copied().unwrap_or(last);
            let new_last = match first_failed {
                Some(f) => f.saturating_sub(1).max(last),
                None => chunk_max,
            };
            if stats.recorded > 0 {
                wake.notify_one();
            }
            // The previous batch is marked (or the session failed: stop, it is read again).
            let fetched_next = network?;
            last = new_last;
            if first_failed.is_some() || next.is_none() {
                imap::mark_done(session, cfg, sel, &done).await?;
                // This batch and the one before are marked: one write saves both.
                store::set_mailbox_state(store.conn(), &source.source, sel.uidvalidity, new_last)?;
                if first_failed.is_some() {
                    // Leave the rest for the next pass rather than skipping past a failure.
                    return Ok(());
                }
                break;
            }
            store::set_mailbox_state(store.conn(), &source.source, sel.uidvalidity, to_mark_last)?;
            to_mark = done;
            to_mark_last = new_last;
            fetched = fetched_next;
        }
    }
}

fn log_outcome(uid: u32, item: &Item, r: &Result<Outcome, store::StoreError>, stats: &mut PassStats) {
    match r {
        Ok(Outcome::Recorded(rec)) => {
            stats.recorded += 1;
            tracing::info!(
                uid,
                row = rec.message,
                verdict = rec.verdict.verdict.as_str(),
                reason = rec.verdict.reason.map(|r| r.as_str()).unwrap_or(""),
                case_id = rec.case.as_deref().unwrap_or(""),
                project = rec.verdict.project.as_deref().unwrap_or(""),
                "message recorded"
            );
        }
        Ok(Outcome::Duplicate { of }) => {
            stats.duplicates += 1;
            tracing::info!(uid, duplicate_of = of, "message seen before");
        }
        Err(e) => {
            stats.errors += 1;
            tracing::error!(uid, source_ref = %item.source_ref, "message not recorded: {e}");
        }
    }
}

fn drain_maildir(pipeline: &Pipeline, path: &Path, store: &mut Store, stats: &mut PassStats) -> std::io::Result<()> {
    let maildir = Maildir::open(path)?;
    let pending = maildir.pending()?;
    for chunk in pending.chunks(crate::BATCH_MESSAGES) {
        let mut items = Vec::with_capacity(chunk.len());
        let mut paths = Vec::with_capacity(chunk.len());
        for p in chunk {
            match std::fs::read(p) {
                Ok(raw) => {
                    items.push(Item {
                        source: format!("maildir:{}", path.display()),
                        source_ref: p.display().to_string(),
                        raw,
                    });
                    paths.push(p);
                }
                Err(e) => tracing::error!(path = %p.display(), "unreadable message: {e}"),
            }
        }
        let results = pipeline.process_batch(store, &items).map_err(std::io::Error::other)?;
        for ((p, item), r) in paths.iter().zip(&items).zip(&results) {
            log_outcome(0, item, r, stats);
            if r.is_ok() {
                maildir.mark_done(p)?;
            }
        }
    }
    Ok(())
}

async fn outbox_loop(pipeline: Arc<Pipeline>, mut stop: watch::Receiver<bool>, wake: Arc<Notify>) {
    let config = pipeline.config();
    let policy = send::RetryPolicy::from_config(config);
    let mut store = match Store::open(&config.database) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("outbox loop cannot open the database: {e}");
            return;
        }
    };
    let transport = match send::Transport::from_config(config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("outbox transport: {e}");
            return;
        }
    };
    loop {
        match send::drain(&mut store, &transport, &policy).await {
            Ok(s) if s.sent + s.deferred + s.failed > 0 => {
                tracing::info!(
                    sent = s.sent,
                    deferred = s.deferred,
                    failed = s.failed,
                    "outbox drained"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!("outbox: {e}"),
        }
        let now = store::now();
        let delay = match outbox::next_due(store.conn()) {
            Ok(Some(t)) => Duration::from_secs(t.saturating_sub(now).clamp(0, 60) as u64),
            _ => Duration::from_secs(60),
        };
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(delay.max(Duration::from_millis(200))) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Sleeps for `d` unless stopped first; returns whether it was stopped.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

/// Exponential backoff with ±25% jitter.
struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max, failures: 0 }
    }

    fn next(&mut self) -> Duration {
        let d = send::exponential_backoff(self.base, self.max, self.failures.min(20), 0.25);
        self.failures += 1;
        d
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}
