//! Mailbox sources: where raw messages come from, and how they are marked done.
//!
//! [`local`] reads files, Maildirs and mbox files; [`imap`] reads an IMAP folder. Sources only
//! move bytes: they never parse or decide, and they mark a message done only after the
//! pipeline reports it committed.

pub mod imap;
pub mod local;
