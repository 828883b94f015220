//! The outbox worker: takes due mail from the outbox, hands it to a transport, records the
//! result.
//!
//! A row is marked sent only after the transport accepted it. Transient failures (4xx,
//! network, timeouts) are retried with exponential backoff and jitter until the message is
//! older than `max_age`; permanent failures (5xx) stop at once. Both end up on the case
//! timeline. Delivery to SMTP is at-least-once: a crash between the server's "250 OK" and
//! our commit sends that one message again, with the same Message-ID.
//!
//! Two transports: `File` writes `<outbox id>-<kind>.eml` into a folder (atomically, via a
//! temporary name; the same row always gets the same name, so a retry overwrites instead of
//! duplicating), and `Smtp` submits through a pool of connections (lettre). Automatic
//! replies leave with the null envelope sender (RFC 3834 §3.3), so they cannot bounce back
//! into a loop.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as LettreTls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{Config, SmtpServer, Tls, Transport as TransportConfig};
use crate::store::{self, Store, StoreError, cases, outbox};

/// Rows taken from the outbox per round.
const ROUND: usize = 256;

/// Where mail goes.
#[derive(Clone)]
pub enum Transport {
    /// One file per message.
    File(PathBuf),
    /// SMTP, with a connection pool.
    Smtp {
        /// The lettre transport (pooled).
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Messages submitted at once.
        parallel: usize,
    },
}

/// Why a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA file could not be read or parsed.
    #[error("smtp.ca_file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The password could not be read.
    #[error("smtp password: {0}")]
    Secret(String),
    /// lettre refused the settings.
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl Transport {
    /// Builds the configured transport. Reads the SMTP password, if any, now.
    pub fn from_config(config: &Config) -> Result<Transport, SetupError> {
        match &config.smtp.transport {
            TransportConfig::File { dir } => Ok(Transport::File(dir.clone())),
            TransportConfig::Smtp(s) => smtp_transport(s),
        }
    }
}

fn smtp_transport(s: &SmtpServer) -> Result<Transport, SetupError> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .timeout(Some(s.timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(s.pool_size)
                .idle_timeout(Duration::from_secs(60)),
        );
    if s.tls != Tls::None {
        let mut params = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|e| SetupError::CaFile {
                path: ca.display().to_string(),
                detail: e.to_string(),
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| SetupError::CaFile {
                path: ca.display().to_string(),
                detail: e.to_string(),
            })?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build_rustls()?;
        builder = builder.tls(match s.tls {
            Tls::Implicit => LettreTls::Wrapper(params),
            _ => LettreTls::Required(params),
        });
    }
    if let Some(user) = &s.username {
        let password = s
            .secret
            .load()
            .map_err(|e| SetupError::Secret(e.to_string()))?
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(Transport::Smtp {
        transport: builder.build(),
        parallel: s.pool_size as usize,
    })
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
        let exp = attempts.clamp(0, 30) as u32;
        let d = self.base.saturating_mul(2u32.saturating_pow(exp)).min(self.max);
        let jitter = 0.8 + fastrand::f64() * 0.4;
        d.mul_f64(jitter)
    }
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
        let now = store::now();
        let mut retried_all = true;
        for (row, result) in due.iter().zip(results) {
            match result {
                Delivery::Sent => {
                    outbox::mark_sent(&tx, row.id, now)?;
                    stats.sent += 1;
                    retried_all = false;
                    on_sent(&tx, row, now)?;
                }
                Delivery::Transient(err) if now - row.created_at < policy.max_age.as_secs() as i64 => {
                    let next = now + policy.delay(row.attempts).as_secs().max(1) as i64;
                    tracing::warn!(outbox = row.id, kind = %row.kind, error = %err, "delivery deferred");
                    outbox::mark_retry(&tx, row.id, next, &err)?;
                    stats.deferred += 1;
                }
                Delivery::Transient(err) | Delivery::Permanent(err) => {
                    tracing::error!(outbox = row.id, kind = %row.kind, error = %err, "delivery failed for good");
                    outbox::mark_failed(&tx, row.id, now, &err)?;
                    stats.failed += 1;
                    retried_all = false;
                    if let Some(case) = &row.case_id {
                        let detail = format!("{} to {}: {err}", row.kind, row.recipients.join(", "));
                        cases::event(&tx, case, now, "delivery_failed", &detail, None)?;
                    }
                }
            }
        }
        tx.commit()?;
        if retried_all {
            // Everything in this round was deferred: the rest of the queue would fare no
            // better right now.
            return Ok(stats);
        }
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

async fn deliver_all(transport: &Transport, due: &[outbox::Due]) -> Vec<Delivery> {
    match transport {
        Transport::File(dir) => due.iter().map(|row| write_file(dir, row)).collect(),
        Transport::Smtp { transport, parallel } => {
            // Collect the futures first: a lazy `map` closure inside a spawned task trips
            // the compiler's higher-ranked lifetime check.
            let futures: Vec<_> = due.iter().map(|row| deliver_smtp(transport, row)).collect();
            futures::stream::iter(futures)
                .buffered((*parallel).max(1))
                .collect()
                .await
        }
    }
}

fn write_file(dir: &std::path::Path, row: &outbox::Due) -> Delivery {
    let name = format!("{:08}-{}.eml", row.id, row.kind);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, &row.body))
        .and_then(|()| std::fs::rename(&tmp, dir.join(&name)));
    match result {
        Ok(()) => Delivery::Sent,
        Err(e) => Delivery::Transient(format!("writing {}: {e}", dir.join(&name).display())),
    }
}

async fn deliver_smtp(transport: &AsyncSmtpTransport<Tokio1Executor>, row: &outbox::Due) -> Delivery {
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
    match transport.send_raw(&envelope, &row.body).await {
        Ok(_) => Delivery::Sent,
        Err(e) if e.is_permanent() => Delivery::Permanent(e.to_string()),
        Err(e) => Delivery::Transient(e.to_string()),
    }
}
