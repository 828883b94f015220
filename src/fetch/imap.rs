//! IMAP source (async-imap over tokio, rustls).
