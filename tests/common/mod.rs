//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod servers;

use std::path::{Path, PathBuf};

use secintake::config::Config;
use secintake::pipeline::{Item, Outcome, Recorded};
use secintake::store::StoreError;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `config/demo.toml`, parsed.
pub fn demo_config() -> Config {
    Config::load(&root().join("config/demo.toml")).expect("demo config is valid")
}

/// The demo config with database and outbox moved into `dir`.
pub fn demo_config_in(dir: &Path) -> Config {
    let mut c = demo_config();
    c.database = dir.join("secintake.db");
    c.smtp.transport = secintake::config::Transport::File {
        dir: dir.join("outbox"),
    };
    c
}

// ---------------------------------------------------------------------------------------------
// Helpers for hostile.rs, pipeline.rs and config.rs.

/// An item from `source`.
pub fn item(source: &str, source_ref: &str, raw: impl Into<Vec<u8>>) -> Item {
    Item {
        source: source.into(),
        source_ref: source_ref.into(),
        raw: raw.into(),
    }
}

/// The `Recorded` of an outcome; panics (naming `what`) on a duplicate or an error.
pub fn recorded<'a>(what: &str, outcome: &'a Result<Outcome, StoreError>) -> &'a Recorded {
    match outcome {
        Ok(Outcome::Recorded(r)) => r,
        other => panic!("{what}: expected Outcome::Recorded, got {other:?}"),
    }
}

/// The body of a plain-text vulnerability report about Tomcat (classified `report`, routed
/// to `tomcat` by the demo config).
pub const REPORT_BODY: &str = "Hi,\r\n\
\r\n\
Tomcat 11.0.15 and 10.1.49 with HTTP/2 enabled throw a NullPointerException in\r\n\
Http2UpgradeHandler when a client sends a PRIORITY_UPDATE frame for a stream id that\r\n\
has never been opened:\r\n\
\r\n\
java.lang.NullPointerException: Cannot invoke \"org.apache.coyote.http2.AbstractStream.getParentStream()\"\r\n\
\tat org.apache.coyote.http2.Http2UpgradeHandler.priorityUpdate(Http2UpgradeHandler.java:1761)\r\n\
\r\n\
The exception is not caught per stream: the whole connection's processing thread dies\r\n\
without releasing its slot in the executor. An unauthenticated attacker can open\r\n\
connections in a loop and send one such frame on each; after maxThreads connections the\r\n\
connector stops serving anyone. Impact: remote denial of service, no authentication,\r\n\
CVSS 7.5 (AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H).\r\n\
\r\n\
Igor\r\n";

/// The body of a capability question (classified `reject_offtopic` / `question`).
pub const QUESTION_BODY: &str = "Hi,\r\n\
\r\n\
does the Apache HTTP Server support TLS 1.3? Our auditors also ask\r\n\
whether the hybrid post-quantum key exchange (X25519MLKEM768) can be\r\n\
enabled with mod_ssl, and which OpenSSL version is required for that.\r\n\
\r\n\
Also, what is the recommended SSLCipherSuite for a school district\r\n\
website?\r\n\
\r\n\
Thanks!\r\n";

/// The subject that goes with [`QUESTION_BODY`].
pub const QUESTION_SUBJECT: &str = "Does Apache HTTP Server support TLS 1.3 and post-quantum key exchange?";

/// A CRLF message: `headers` (each without line end), a blank line, then `body`.
pub fn mail(headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = String::new();
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// A plain-text Tomcat report from `from` (a full `From:` value) with this Message-ID (without
/// brackets) and subject, plus `extra` headers.
pub fn report_mail(from: &str, message_id: &str, subject: &str, extra: &[&str]) -> Vec<u8> {
    let from = format!("From: {from}");
    let mid = format!("Message-ID: <{message_id}>");
    let subject = format!("Subject: {subject}");
    let mut headers = vec![
        from.as_str(),
        "To: security@example.org",
        subject.as_str(),
        "Date: Tue, 17 Mar 2026 10:00:00 +0200",
        mid.as_str(),
    ];
    headers.extend_from_slice(extra);
    headers.extend_from_slice(&["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8"]);
    mail(&headers, REPORT_BODY)
}

/// An off-topic question from `from` with this Message-ID (without brackets), plus `extra`
/// headers.
pub fn question_mail(from: &str, message_id: &str, extra: &[&str]) -> Vec<u8> {
    let from = format!("From: {from}");
    let mid = format!("Message-ID: <{message_id}>");
    let subject = format!("Subject: {QUESTION_SUBJECT}");
    let mut headers = vec![
        from.as_str(),
        "To: security@example.org",
        subject.as_str(),
        "Date: Thu, 2 Apr 2026 11:39:56 -0400",
        mid.as_str(),
    ];
    headers.extend_from_slice(extra);
    headers.extend_from_slice(&["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8"]);
    mail(&headers, QUESTION_BODY)
}

/// The current UTC year (case ids carry it).
pub fn current_year() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

/// A tiny deterministic xorshift64* generator (no extra crates, reproducible failures).
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Standard base64 with padding (for building encoded words and attachments).
pub fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(TABLE.get((i & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}
