//! IMAP source: async-imap over tokio, TLS by rustls.
//!
//! One [`ImapSource::session`] is one connection: connect (implicit TLS, STARTTLS, or plain to
//! loopback only), authenticate (LOGIN, AUTHENTICATE PLAIN or XOAUTH2), select the folder,
//! then alternate between draining new mail and waiting for more (IDLE, re-issued before
//! the 29-minute limit, or polling). The caller owns reconnecting: a [`FetchError`] ends the
//! session, and the daemon reconnects with backoff.
//!
//! Draining is exactly-once by construction:
//! - messages are fetched with `BODY.PEEK[]` (no implicit `\Seen`) in batches of UIDs above
//!   the last committed UID of this UIDVALIDITY, kept in the store (batches of `batch_size`
//!   messages and at most [`crate::BATCH_BYTES`], from the sizes the server reports);
//! - a batch is committed by the pipeline before anything is done to it on the server; only
//!   the messages whose commit succeeded are marked done (`\Seen` + keyword, or moved);
//! - a UIDVALIDITY change resets the bookkeeping and rescans the folder; the store's
//!   duplicate detection (same bytes or same Message-ID from this source) makes the rescan
//!   create nothing twice, and nothing is skipped.
//!
//! A crash between commit and marking leaves messages unmarked on the server: the next pass
//! sees them as duplicates and marks them then.
//!
//! Secrets are read at connection time and never logged.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::{Authenticator, Client, Session};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{After, Imap, ImapAuth, Tls};

/// Why a session ended. Every variant means "reconnect later", except [`FetchError::Config`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Network or TLS failure.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server said no, or spoke nonsense.
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
    /// Authentication failed (reported separately: retrying fast will not help).
    #[error("login as {user} failed: {detail}")]
    Auth {
        /// The login name (not secret).
        user: String,
        /// The server's answer.
        detail: String,
    },
    /// The settings cannot work (bad CA file, unreadable secret, refused plaintext).
    #[error("{0}")]
    Config(String),
    /// The store failed while committing a batch.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A connection: plain TCP (loopback only) or TLS.
pub enum Stream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS (implicit or after STARTTLS).
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(_) => write!(f, "Stream::Plain"),
            Stream::Tls(_) => write!(f, "Stream::Tls"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A logged-in, selected IMAP session.
pub type ImapSession = Session<Stream>;

/// What the server offered and what the folder holds (for `check-config` and logs).
#[derive(Debug, Clone)]
pub struct Selected {
    /// UIDVALIDITY of the folder.
    pub uidvalidity: u32,
    /// Messages in the folder.
    pub exists: u32,
    /// IDLE advertised.
    pub idle: bool,
    /// MOVE advertised.
    pub moves: bool,
    /// UIDPLUS advertised.
    pub uidplus: bool,
    /// All capabilities, as strings.
    pub capabilities: Vec<String>,
}

/// The configured IMAP folder.
#[derive(Clone)]
pub struct ImapSource {
    cfg: Imap,
    /// `imap:user@host/folder`: the store's source name for these messages.
    pub source: String,
}

impl ImapSource {
    /// A source for these settings.
    pub fn new(cfg: Imap) -> ImapSource {
        let source = format!("imap:{}@{}/{}", cfg.username, cfg.host, cfg.folder);
        ImapSource { cfg, source }
    }

    /// The settings.
    pub fn config(&self) -> &Imap {
        &self.cfg
    }

    /// Connects, authenticates and selects the folder.
    pub async fn session(&self) -> Result<(ImapSession, Selected), FetchError> {
        let c = &self.cfg;
        if c.tls == Tls::None && !crate::config::is_loopback(&c.host) {
            return Err(FetchError::Config(format!(
                "refusing plaintext IMAP to non-loopback host {}",
                c.host
            )));
        }
        let tcp = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect((c.host.as_str(), c.port)))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let client = match c.tls {
            Tls::Implicit => {
                let tls = self.tls_connect(tcp).await?;
                let mut client = Client::new(Stream::Tls(Box::new(tls)));
                greeting(&mut client).await?;
                client
            }
            Tls::StartTls => {
                let mut client = Client::new(Stream::Plain(tcp));
                greeting(&mut client).await?;
                client.run_command_and_check_ok("STARTTLS", None).await?;
                let Stream::Plain(tcp) = client.into_inner() else {
                    return Err(FetchError::Config("STARTTLS on a TLS stream".into()));
                };
                Client::new(Stream::Tls(Box::new(self.tls_connect(tcp).await?)))
            }
            Tls::None => {
                let mut client = Client::new(Stream::Plain(tcp));
                greeting(&mut client).await?;
                client
            }
        };
        let secret = c
            .secret
            .load()
            .map_err(|e| FetchError::Config(format!("mailbox secret: {e:#}")))?
            .unwrap_or_default();
        let auth_err = |(e, _): (async_imap::error::Error, _)| FetchError::Auth {
            user: c.username.clone(),
            detail: e.to_string(),
        };
        let mut session = match c.auth {
            ImapAuth::Login => client.login(&c.username, &secret).await.map_err(auth_err)?,
            ImapAuth::Plain => client
                .authenticate(
                    "PLAIN",
                    Plain {
                        user: c.username.clone(),
                        secret,
                    },
                )
                .await
                .map_err(auth_err)?,
            ImapAuth::XOAuth2 => client
                .authenticate(
                    "XOAUTH2",
                    XOAuth2 {
                        user: c.username.clone(),
                        token: secret,
                        sent: false,
                    },
                )
                .await
                .map_err(auth_err)?,
        };
        let caps = session.capabilities().await?;
        let capabilities: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
        if let After::Move(target) = &c.after {
            // UID MOVE into a folder that does not exist fails; create it once (an error here
            // means it exists already, or the server will say why at the first move).
            let _ = session.create(target).await;
        }
        let mailbox = session.select(&c.folder).await?;
        let uidvalidity = mailbox
            .uid_validity
            .ok_or_else(|| FetchError::Config(format!("folder {} has no UIDVALIDITY", c.folder)))?;
        let selected = Selected {
            uidvalidity,
            exists: mailbox.exists,
            idle: caps.has_str("IDLE"),
            moves: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            capabilities,
        };
        Ok((session, selected))
    }

    async fn tls_connect(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, FetchError> {
        tls_connect(&self.cfg.host, self.cfg.ca_file.as_deref(), "mailbox", tcp).await
    }
}

/// TLS over `tcp` to `host` (rustls, ring), trusting the web PKI roots and `ca_file`. `table`
/// names the config table in errors. Shared by IMAP and the SMTP outbox.
pub async fn tls_connect(
    host: &str,
    ca_file: Option<&std::path::Path>,
    table: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let bad = |e: &dyn fmt::Display| FetchError::Config(format!("{table}.ca_file {}: {e}", ca.display()));
        let pem = std::fs::read(ca).map_err(|e| bad(&e))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| FetchError::Config(format!("{table}.host {host:?}: {e}")))?;
    Ok(TlsConnector::from(Arc::new(config)).connect(name, tcp).await?)
}

impl lettre::transport::smtp::client::AsyncTokioStream for Stream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

async fn greeting(client: &mut Client<Stream>) -> Result<(), FetchError> {
    match tokio::time::timeout(Duration::from_secs(30), client.read_response()).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no greeting").into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no greeting").into()),
    }
}

struct Plain {
    user: String,
    secret: String,
}

impl Authenticator for Plain {
    type Response = Vec<u8>;
    fn process(&mut self, _: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(self.user.len() + self.secret.len() + 2);
        r.push(0);
        r.extend_from_slice(self.user.as_bytes());
        r.push(0);
        r.extend_from_slice(self.secret.as_bytes());
        r
    }
}

/// SASL XOAUTH2 (Gmail, Microsoft 365): `user=U^Aauth=Bearer T^A^A`. On failure the server
/// sends a JSON challenge, which must be answered with an empty response.
struct XOAuth2 {
    user: String,
    token: String,
    sent: bool,
}

impl Authenticator for XOAuth2 {
    type Response = Vec<u8>;
    fn process(&mut self, _: &[u8]) -> Vec<u8> {
        if self.sent {
            return Vec::new();
        }
        self.sent = true;
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token).into_bytes()
    }
}

/// UIDs above `last` in the selected folder, ascending. `UID SEARCH` returns bare numbers;
/// a `UID FETCH n:* (UID)` would hold one parsed response (and its buffer) per message, which
/// costs hundreds of megabytes for a large backlog.
pub async fn new_uids(session: &mut ImapSession, last: u32) -> Result<Vec<u32>, FetchError> {
    let query = format!("UID {}:*", last.saturating_add(1));
    let found = session.uid_search(&query).await?;
    // `n:*` always includes the highest UID, even when it is below n.
    let mut uids: Vec<u32> = found.into_iter().filter(|&u| u > last).collect();
    uids.sort_unstable();
    while session.unsolicited_responses.try_recv().is_ok() {}
    Ok(uids)
}

/// The sizes (`RFC822.SIZE`) of the messages with these UIDs, in UID order, asked in groups
/// of 1,000 so that no response holds a whole backlog. A message the server does not report
/// (expunged meanwhile) counts as empty: fetching it will find nothing either.
pub async fn sizes(session: &mut ImapSession, uids: &[u32]) -> Result<Vec<(u32, u32)>, FetchError> {
    let mut out = Vec::with_capacity(uids.len());
    for group in uids.chunks(1000) {
        let fetches: Vec<_> = session
            .uid_fetch(uid_set(group), "(UID RFC822.SIZE)")
            .await?
            .try_collect()
            .await?;
        let mut known: Vec<(u32, u32)> = fetches.iter().filter_map(|f| Some((f.uid?, f.size?))).collect();
        known.sort_unstable();
        out.extend(group.iter().map(|&uid| {
            let size = known
                .binary_search_by_key(&uid, |(u, _)| *u)
                .ok()
                .and_then(|i| known.get(i))
                .map_or(0, |(_, size)| *size);
            (uid, size)
        }));
    }
    Ok(out)
}

/// Splits messages (UID and size, in order) into batches of at most `count` messages and
/// `bytes` bytes: what a batch fetches is in memory at once (twice: the batch being recorded
/// and the next one being fetched). A message bigger than `bytes` is a batch of its own.
pub fn batches(sizes: &[(u32, u32)], count: usize, bytes: usize) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut held = 0usize;
    for &(uid, size) in sizes {
        let size = size as usize;
        if !current.is_empty() && (current.len() >= count.max(1) || held.saturating_add(size) > bytes) {
            out.push(std::mem::take(&mut current));
            held = 0;
        }
        current.push(uid);
        held = held.saturating_add(size);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The raw messages with these UIDs (`BODY.PEEK[]`, so nothing is flagged by reading).
pub async fn fetch_raw(session: &mut ImapSession, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>, FetchError> {
    let set = uid_set(uids);
    // Each body is copied out as its response arrives, and the response dropped: collecting
    // the responses first held every message twice.
    let mut out: Vec<(u32, Vec<u8>)> = session
        .uid_fetch(&set, "(UID BODY.PEEK[])")
        .await?
        .try_filter_map(|f| async move { Ok(f.uid.zip(f.body().map(<[u8]>::to_vec))) })
        .try_collect()
        .await?;
    out.sort_by_key(|(u, _)| *u);
    Ok(out)
}

/// Marks committed messages done on the server, as configured.
pub async fn mark_done(session: &mut ImapSession, cfg: &Imap, sel: &Selected, uids: &[u32]) -> Result<(), FetchError> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    match &cfg.after {
        After::Seen => {
            let flags = format!("+FLAGS.SILENT (\\Seen {})", cfg.keyword);
            let _: Vec<_> = session.uid_store(&set, &flags).await?.try_collect().await?;
        }
        After::Move(folder) => {
            if sel.moves {
                session.uid_mv(&set, folder).await?;
            } else {
                session.uid_copy(&set, folder).await?;
                let _: Vec<_> = session
                    .uid_store(&set, "+FLAGS.SILENT (\\Seen \\Deleted)")
                    .await?
                    .try_collect()
                    .await?;
                if sel.uidplus {
                    let _: Vec<_> = session.uid_expunge(&set).await?.try_collect().await?;
                }
            }
        }
    }
    // Unsolicited EXISTS/EXPUNGE are not needed: the next pass asks for UIDs above the last.
    while session.unsolicited_responses.try_recv().is_ok() {}
    Ok(())
}

/// Why an IDLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleEnd {
    /// The server announced something (new mail, usually).
    NewData,
    /// The timeout passed; IDLE is re-issued.
    Timeout,
    /// The caller asked to stop.
    Stopped,
}

/// Waits for new mail with IDLE for at most `timeout`, or until `stop` resolves. Returns the
/// session and why waiting ended.
pub async fn idle(
    session: ImapSession,
    timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(ImapSession, IdleEnd), FetchError> {
    let mut handle = session.idle();
    handle.init().await?;
    tokio::pin!(stop);
    let stopped = {
        let (wait, interrupt) = handle.wait_with_timeout(timeout);
        tokio::pin!(wait);
        tokio::select! {
            r = &mut wait => {
                match r? {
                    IdleResponse::NewData(_) => IdleEnd::NewData,
                    IdleResponse::Timeout | IdleResponse::ManualInterrupt => IdleEnd::Timeout,
                }
            }
            () = &mut stop => {
                drop(interrupt);
                let _ = wait.await;
                IdleEnd::Stopped
            }
        }
    };
    let session = handle.done().await?;
    Ok((session, stopped))
}

/// `1,2,3,7,9:12` from sorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&start) = uids.get(i) {
        let mut end = start;
        while uids.get(i + 1) == Some(&end.saturating_add(1)) {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{batches, uid_set};

    #[test]
    fn xoauth2_sends_the_sasl_string_once_then_an_empty_answer() {
        use async_imap::Authenticator;
        let mut a = super::XOAuth2 {
            user: "security@example.org".into(),
            token: "ya29.tok".into(),
            sent: false,
        };
        assert_eq!(
            a.process(b""),
            b"user=security@example.org\x01auth=Bearer ya29.tok\x01\x01".to_vec()
        );
        // A failed XOAUTH2 gets a JSON challenge, which must be answered with an empty line.
        assert!(a.process(br#"{"status":"400"}"#).is_empty());
    }

    #[test]
    fn plain_is_nul_user_nul_password() {
        use async_imap::Authenticator;
        let mut p = super::Plain {
            user: "u".into(),
            secret: "p w".into(),
        };
        assert_eq!(p.process(b""), b"\0u\0p w".to_vec());
    }

    #[test]
    fn batches_stop_at_their_count_or_their_bytes() {
        let sizes = [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10)];
        assert_eq!(batches(&sizes, 2, 1_000), [vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(batches(&sizes, 100, 25), [vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(batches(&sizes, 100, 30), [vec![1, 2, 3], vec![4, 5]]);
        // A message over the limit goes alone; the ones around it are not held back.
        let sizes = [(1, 10), (2, 5_000), (3, 10), (4, 10)];
        assert_eq!(batches(&sizes, 100, 100), [vec![1], vec![2], vec![3, 4]]);
        assert!(batches(&[], 10, 10).is_empty());
        assert_eq!(batches(&[(7, 0)], 0, 0), [vec![7]]);
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10, 11, 12]), "1:3,7,9:12");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }
}
