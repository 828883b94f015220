//! The outbox worker: takes due mail from the outbox, hands it to a transport, records the
//! result.
//!
//! A row is marked sent only after the transport accepted it. Transient failures (4xx,
//! network, timeouts) are retried with exponential backoff and jitter until the message is
//! older than `max_age`; permanent failures (5xx) stop at once. Both end up on the case
//! timeline. Delivery to SMTP is at-least-once: a crash between the server's "250 OK" and
//! our commit sends that one message again, with the same Message-ID.
//!
//! Two transports:
//! - `File` writes `<outbox id>-<kind>.eml` into a folder, atomically: an unnamed file linked
//!   into place once written, else a temporary name renamed. The same row always gets the
//!   same name, so a retry overwrites instead of duplicating.
//! - `Smtp` submits over up to `pool_size` kept connections: our own `TCP_NODELAY` sockets
//!   (and rustls for implicit TLS) driving lettre's `AsyncSmtpConnection` (STARTTLS, AUTH,
//!   the SMTP dialogue).
//!
//! Automatic replies leave with the null envelope sender (RFC 3834 §3.3), so they cannot
//! bounce back into a loop.
//!
//! [`drain`] sends what is due, round after round, and records each round itself. A
//! [`Courier`] sends while a mailbox is still being read (`ingest`), and leaves the recording
//! to the pipeline's writer, so the store keeps one writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

use crate::fetch::imap::{Stream, tls_connect};

use crate::config::{Config, SmtpServer, Tls, Transport as TransportConfig};
use crate::pipeline::Rider;
use crate::store::{self, Store, StoreError, cases, outbox};

/// Rows taken from the outbox per round: a round's messages are all in memory at once (a
/// forward with its original), and a burst of large reports must not take the daemon's
/// memory with it.
const ROUND: outbox::RoundLimit = outbox::RoundLimit {
    count: 256,
    bytes: 16 << 20,
};
/// A [`Courier`]'s round: it runs beside the pipeline, so it holds less.
const COURIER_ROUND: outbox::RoundLimit = outbox::RoundLimit {
    count: 64,
    bytes: 4 << 20,
};

/// Where mail goes.
#[derive(Clone)]
pub enum Transport {
    /// One file per message.
    File(PathBuf),
    /// SMTP, with a small pool of connections.
    Smtp(Arc<SmtpClient>),
}

/// Why a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The password could not be read.
    #[error("smtp password: {0}")]
    Secret(String),
}

impl Transport {
    /// Builds the configured transport. Reads the SMTP password, if any, now.
    pub fn from_config(config: &Config) -> Result<Transport, SetupError> {
        match &config.smtp.transport {
            TransportConfig::File { dir } => Ok(Transport::File(dir.clone())),
            TransportConfig::Smtp(s) => {
                let credentials = match &s.username {
                    Some(user) => {
                        let password = s
                            .secret
                            .load()
                            .map_err(|e| SetupError::Secret(e.to_string()))?
                            .unwrap_or_default();
                        Some(Credentials::new(user.clone(), password))
                    }
                    None => None,
                };
                // The host name, as lettre's own transport would send it (RFC 5321 §4.1.4).
                let hello = ClientId::default();
                Ok(Transport::Smtp(Arc::new(SmtpClient {
                    server: s.clone(),
                    credentials,
                    hello,
                    idle: Mutex::new(Vec::new()),
                })))
            }
        }
    }
}

/// SMTP submission over lettre's connection type, with our own sockets and pool.
///
/// lettre's pooled transport cannot set `TCP_NODELAY`, and it writes the message and the final
/// `.` in two writes before waiting: against a server with delayed ACKs that costs ~40 ms per
/// message (measured: 81 messages/s for a 10,000-message drain, ~50 ms of our 50 ms IDLE
/// latency). Here each connection is a tokio socket with `TCP_NODELAY`, handed to
/// `AsyncSmtpConnection`, and kept for reuse while it works.
pub struct SmtpClient {
    server: SmtpServer,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl SmtpClient {
    /// Connections used at once.
    pub fn parallel(&self) -> usize {
        (self.server.pool_size as usize).max(1)
    }

    /// Opens, greets, secures and authenticates a new connection.
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let s = &self.server;
        let tcp = tokio::time::timeout(s.timeout, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", s.host, s.port))?
            .map_err(|e| format!("connecting to {}:{}: {e}", s.host, s.port))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let stream = match s.tls {
            Tls::Implicit => Stream::Tls(Box::new(
                tls_connect(&s.host, s.ca_file.as_deref(), "smtp", tcp)
                    .await
                    .map_err(|e| e.to_string())?,
            )),
            _ => Stream::Plain(tcp),
        };
        let ca_pem = match &s.ca_file {
            Some(ca) => Some(std::fs::read(ca).map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?),
            None => None,
        };
        let work = async {
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?;
            if s.tls == Tls::StartTls {
                let mut params = TlsParameters::builder(s.host.clone());
                if let Some(pem) = &ca_pem {
                    params = params.add_root_certificate(Certificate::from_pem(pem)?);
                }
                conn.starttls(params.build_rustls()?, &self.hello).await?;
            }
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
            }
            Ok::<_, lettre::transport::smtp::Error>(conn)
        };
        tokio::time::timeout(s.timeout, work)
            .await
            .map_err(|_| format!("{}:{} did not answer in time", s.host, s.port))?
            .map_err(|e| e.to_string())
    }

    async fn send(&self, envelope: &Envelope, body: &[u8]) -> Delivery {
        let pooled = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        if let Some(conn) = pooled {
            // A kept connection may have been closed by the server meanwhile: on anything but a
            // permanent refusal, try once more on a fresh one.
            match self.send_on(conn, envelope, body).await {
                Delivery::Transient(_) => {}
                done => return done,
            }
        }
        match self.connect().await {
            Ok(conn) => self.send_on(conn, envelope, body).await,
            Err(e) => Delivery::Transient(e),
        }
    }

    async fn send_on(&self, mut conn: AsyncSmtpConnection, envelope: &Envelope, body: &[u8]) -> Delivery {
        match tokio::time::timeout(self.server.timeout, conn.send(envelope, body)).await {
            Ok(Ok(_)) => {
                if let Ok(mut idle) = self.idle.lock()
                    && idle.len() < self.parallel()
                {
                    idle.push(conn);
                }
                Delivery::Sent
            }
            // After a refusal the connection is in an unknown state: drop it.
            Ok(Err(e)) if e.is_permanent() => Delivery::Permanent(e.to_string()),
            Ok(Err(e)) => Delivery::Transient(e.to_string()),
            Err(_) => Delivery::Transient("timed out waiting for the server".into()),
        }
    }
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Give up after this age.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// From the `[smtp]` settings.
    pub fn from_config(config: &Config) -> RetryPolicy {
        RetryPolicy {
            base: config.smtp.retry_base,
            max: config.smtp.retry_max,
            max_age: config.smtp.max_age,
        }
    }

    /// Delay before attempt `attempts + 1`: base * 2^attempts, capped, with ±20% jitter.
    pub fn delay(&self, attempts: i64) -> Duration {
        exponential_backoff(self.base, self.max, attempts.clamp(0, 30) as u32, 0.2)
    }
}

/// `base * 2^n`, capped at `max`, then spread by ±`jitter` (a fraction) so that many clients
/// retrying at once do not stay in step. Used by the outbox and by IMAP reconnects.
pub fn exponential_backoff(base: Duration, max: Duration, n: u32, jitter: f64) -> Duration {
    let d = base.saturating_mul(2u32.saturating_pow(n)).min(max);
    d.mul_f64(1.0 - jitter + fastrand::f64() * 2.0 * jitter)
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the server (or written to disk).
    Sent,
    /// Try again later.
    Transient(String),
    /// Never going to work.
    Permanent(String),
}

/// Totals of one drain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainStats {
    /// Accepted.
    pub sent: usize,
    /// To be retried.
    pub deferred: usize,
    /// Given up.
    pub failed: usize,
}

/// Sends everything due now, round after round, until nothing is due. Returns the totals.
pub async fn drain(store: &mut Store, transport: &Transport, policy: &RetryPolicy) -> Result<DrainStats, StoreError> {
    let mut stats = DrainStats::default();
    loop {
        let now = store::now();
        let due = outbox::due(store.conn(), now, ROUND)?;
        if due.is_empty() {
            return Ok(stats);
        }
        let results = deliver_all(transport, &due).await;
        let tx = store.batch()?;
        let round = record(&tx, due.into_iter().zip(results), policy)?;
        tx.commit()?;
        stats.add(round);
        if round.deferred > 0 && round.sent == 0 && round.failed == 0 {
            // Everything in this round was deferred: the rest of the queue would fare no
            // better right now.
            return Ok(stats);
        }
    }
}

impl DrainStats {
    /// Adds `other` to these totals.
    pub fn add(&mut self, other: DrainStats) {
        self.sent += other.sent;
        self.deferred += other.deferred;
        self.failed += other.failed;
    }
}

/// Records what delivery attempts came to: sent, retried later, or failed for good (on the
/// case timeline too).
fn record(
    conn: &rusqlite::Connection,
    attempts: impl IntoIterator<Item = (outbox::Due, Delivery)>,
    policy: &RetryPolicy,
) -> Result<DrainStats, StoreError> {
    let mut stats = DrainStats::default();
    let now = store::now();
    for (row, result) in attempts {
        match result {
            Delivery::Sent => {
                outbox::mark_sent(conn, row.id, now)?;
                stats.sent += 1;
                on_sent(conn, &row, now)?;
            }
            Delivery::Transient(err) if now - row.created_at < policy.max_age.as_secs() as i64 => {
                let next = now + policy.delay(row.attempts).as_secs().max(1) as i64;
                tracing::warn!(outbox = row.id, kind = %row.kind, error = %err, "delivery deferred");
                outbox::mark_retry(conn, row.id, next, &err)?;
                stats.deferred += 1;
            }
            Delivery::Transient(err) | Delivery::Permanent(err) => {
                tracing::error!(outbox = row.id, kind = %row.kind, error = %err, "delivery failed for good");
                outbox::mark_failed(conn, row.id, now, &err)?;
                stats.failed += 1;
                if let Some(case) = &row.case_id {
                    let detail = format!("{} to {}: {err}", row.kind, row.recipients.join(", "));
                    cases::event(conn, case, now, "delivery_failed", &detail, None)?;
                }
            }
        }
    }
    Ok(stats)
}

/// Delivers outbox rows as soon as they are committed, while the pipeline is still reading a
/// mailbox, so that sending overlaps reading instead of following it.
///
/// The courier reads due rows on its own connection (a WAL reader never blocks the writer)
/// and hands what each delivery came to back to the pipeline, which records the results in
/// its next batch's transaction as a [`Rider`]: the store keeps one writer. (Two writers,
/// tried first, spent their time waiting on each other's lock.) When the mailbox is done,
/// [`Courier::finish`] lets the courier deliver what is left of the committed rows and stop,
/// and [`Courier::record_rest`] records the last results; a plain [`drain`] then sends
/// whatever is still due. A crash loses no mail: a row is marked sent only after its delivery,
/// so at worst a delivered message is delivered again, as in [`drain`].
///
/// `ingest` uses it (the file transport: 0.9 s of the 10,000-message bench overlapped). `once`
/// does not: on the benchmark machine the MTA shares the two cores, and sending while reading
/// only slowed the reading down, with no gain in the full drain (measured A/B).
pub struct Courier {
    shared: Arc<CourierShared>,
    policy: RetryPolicy,
    stats: DrainStats,
    /// Results written in the current transaction, kept until it commits: a batch that rolls
    /// back writes them again in the next one.
    riding: Vec<(outbox::Due, Delivery)>,
    /// Their totals.
    riding_stats: DrainStats,
}

#[derive(Default)]
struct CourierShared {
    results: Mutex<Vec<(outbox::Due, Delivery)>>,
    wake: tokio::sync::Notify,
    stop: std::sync::atomic::AtomicBool,
}

impl Courier {
    /// A courier and the task that delivers: run the future (on a runtime with a thread of
    /// its own: the pipeline blocks its thread) with a second connection to the database.
    pub fn start(
        reader: Store,
        transport: Arc<Transport>,
        policy: RetryPolicy,
    ) -> (
        Courier,
        impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    ) {
        let shared = Arc::new(CourierShared::default());
        let courier = Courier {
            shared: shared.clone(),
            policy,
            stats: DrainStats::default(),
            riding: Vec::new(),
            riding_stats: DrainStats::default(),
        };
        (courier, deliver_committed(shared, reader, transport))
    }

    /// The mailbox is done: deliver what is committed and stop.
    pub fn finish(&self) {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
    }

    /// Records the results not recorded yet (after the delivery task ended) and returns the
    /// totals of everything this courier delivered.
    pub fn record_rest(mut self, store: &mut Store) -> Result<DrainStats, StoreError> {
        let tx = store.batch()?;
        self.ride(&tx)?;
        tx.commit()?;
        self.committed();
        Ok(self.stats)
    }
}

impl Rider for Courier {
    fn ride(&mut self, tx: &rusqlite::Connection) -> Result<(), StoreError> {
        let new = std::mem::take(&mut *self.shared.results.lock().unwrap_or_else(|e| e.into_inner()));
        self.riding.extend(new);
        self.riding_stats = record(tx, self.riding.iter().cloned(), &self.policy)?;
        Ok(())
    }

    fn committed(&mut self) {
        self.riding.clear();
        self.stats.add(std::mem::take(&mut self.riding_stats));
        self.shared.wake.notify_one();
    }
}

/// The courier's task: deliver rows above the last one seen, as they are committed.
async fn deliver_committed(
    shared: Arc<CourierShared>,
    reader: Store,
    transport: Arc<Transport>,
) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        // Read the flag before the rows: rows committed before `finish` are then all seen.
        let stopping = shared.stop.load(std::sync::atomic::Ordering::Acquire);
        let due = outbox::due_after(reader.conn(), store::now(), after, COURIER_ROUND)?;
        let Some(last) = due.last() else {
            if stopping {
                return Ok(());
            }
            shared.wake.notified().await;
            continue;
        };
        after = last.id;
        let results = deliver_all(&transport, &due).await;
        let done = due.into_iter().zip(results).map(|(mut row, r)| {
            row.message = outbox::Stored::default(); // the bytes are not needed to record it
            (row, r)
        });
        shared.results.lock().unwrap_or_else(|e| e.into_inner()).extend(done);
    }
}

/// Bookkeeping after a delivery: the team's copy of a new case moves it to `forwarded`.
fn on_sent(conn: &rusqlite::Connection, row: &outbox::Due, now: i64) -> Result<(), StoreError> {
    if row.kind != "forward" {
        return Ok(());
    }
    let Some(case) = &row.case_id else {
        return Ok(());
    };
    if cases::state(conn, case)? == Some(cases::CaseState::Reported) {
        let detail = format!("to {}", row.recipients.join(", "));
        cases::set_state(conn, case, cases::CaseState::Forwarded, &detail, now)?;
    }
    Ok(())
}

/// A queued message as it goes out: a forward gets its original back (see
/// [`outbox::Stored`]).
pub fn wire(message: &outbox::Stored) -> std::borrow::Cow<'_, [u8]> {
    match &message.original {
        Some(raw) => crate::reply::splice_original(&message.body, message.original_at, raw).into(),
        None => (&message.body[..]).into(),
    }
}

/// Outbox row `id` as it goes (or went) out.
pub fn rendered(conn: &rusqlite::Connection, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(outbox::stored(conn, id)?.map(|m| wire(&m).into_owned()))
}

async fn deliver_all(transport: &Transport, due: &[outbox::Due]) -> Vec<Delivery> {
    match transport {
        Transport::File(dir) => {
            // Made once a round: a folder removed meanwhile fails the round's writes, and the
            // retry makes it again.
            let made = std::fs::create_dir_all(dir).map_err(|e| e.to_string());
            due.iter()
                .map(|row| {
                    let name = format!("{:08}-{}.eml", row.id, row.kind);
                    let written = made
                        .clone()
                        .and_then(|()| write_atomically(dir, &name, &wire(&row.message)).map_err(|e| e.to_string()));
                    match written {
                        Ok(()) => Delivery::Sent,
                        Err(e) => Delivery::Transient(format!("writing {}: {e}", dir.join(&name).display())),
                    }
                })
                .collect()
        }
        Transport::Smtp(client) => {
            // Collect the futures first: a lazy `map` closure inside a spawned task trips
            // the compiler's higher-ranked lifetime check.
            let futures: Vec<_> = due.iter().map(|row| deliver_smtp(client, row)).collect();
            futures::stream::iter(futures)
                .buffered(client.parallel())
                .collect()
                .await
        }
    }
}

/// Writes `bytes` to `dir/name` so that the name appears only with all of its content.
///
/// The content goes into an unnamed file (`O_TMPFILE`) that is linked into place once
/// written: one new directory entry. A temporary name renamed over the target costs three
/// entry operations in a folder of thousands (most of the courier's time in `ingest`), so it
/// is only the fallback: where the kernel, the file system or a missing `/proc` refuse the
/// first way, and where `name` exists already (a retry after a crash between writing a row
/// and recording it: `linkat` does not replace, `rename` does).
fn write_atomically(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if write_unnamed(dir, name, bytes).is_ok() {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

fn write_unnamed(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    let mut file = std::fs::File::from(rustix::fs::openat(CWD, dir, flags, Mode::from(0o666))?);
    file.write_all(bytes)?;
    // linkat(2) of the descriptor itself (AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; its /proc
    // link does not.
    let unnamed = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(CWD, unnamed.as_str(), CWD, dir.join(name), AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}

async fn deliver_smtp(client: &SmtpClient, row: &outbox::Due) -> Delivery {
    let from = if row.envelope_from.is_empty() {
        None
    } else {
        match row.envelope_from.parse::<Address>() {
            Ok(a) => Some(a),
            Err(e) => return Delivery::Permanent(format!("bad envelope sender: {e}")),
        }
    };
    let to: Result<Vec<Address>, _> = row.recipients.iter().map(|r| r.parse::<Address>()).collect();
    let to = match to {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return Delivery::Permanent("no recipients".into()),
        Err(e) => return Delivery::Permanent(format!("bad recipient: {e}")),
    };
    let envelope = match Envelope::new(from, to) {
        Ok(e) => e,
        Err(e) => return Delivery::Permanent(format!("bad envelope: {e}")),
    };
    client.send(&envelope, &wire(&row.message)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_appears_whole_and_a_retry_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "00000001-ack.eml", b"first").unwrap();
        write_atomically(dir.path(), "00000002-ack.eml", b"other").unwrap();
        assert_eq!(names(dir.path()), ["00000001-ack.eml", "00000002-ack.eml"]);
        // The row was written, then the process died before recording it: the retry writes
        // the same name again, and that must replace the file, not fail or add a second one.
        write_atomically(dir.path(), "00000001-ack.eml", b"second").unwrap();
        assert_eq!(std::fs::read(dir.path().join("00000001-ack.eml")).unwrap(), b"second");
        assert_eq!(
            names(dir.path()),
            ["00000001-ack.eml", "00000002-ack.eml"],
            "nothing left behind"
        );
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_file_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(write_atomically(&gone, "00000001-ack.eml", b"x").is_err());
        assert!(names(dir.path()).is_empty());
    }
}
