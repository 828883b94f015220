//! Local sources: `.eml` files, folders of them, Maildirs and mbox files.
//!
//! [`LocalSource`] walks the given paths lazily, one message at a time, so a large mbox or
//! Maildir never sits in memory whole. A folder with `new/` or `cur/` is a Maildir (`new/`
//! first, each sorted by name); any other folder contributes its `*.eml` files, sorted; a
//! file starting with `From ` is an mbox; any other file is one message. An unreadable
//! path is an error item naming it; the walk goes on.
//!
//! [`Maildir`] is the daemon's view of one Maildir: it lists `new/` and, once a message is
//! committed, moves it to `cur/` with the `S` (seen) flag — the Maildir form of "done".

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use mail_parser::mailbox::mbox::MessageIterator;

use crate::pipeline::Item;

/// The source name for local files (duplicates by Message-ID are looked up per source).
pub const SOURCE: &str = "local";

/// A path that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct LocalError {
    /// The path.
    pub path: String,
    /// What went wrong.
    pub error: std::io::Error,
}

enum Pending {
    Path(PathBuf),
    Message(PathBuf),
    Mbox(PathBuf),
}

/// Lazily yields every message under the given paths.
pub struct LocalSource {
    queue: VecDeque<Pending>,
    mbox: Option<(PathBuf, MessageIterator<BufReader<File>>, usize)>,
}

impl LocalSource {
    /// A walk over `paths`, in order.
    pub fn new(paths: &[PathBuf]) -> LocalSource {
        LocalSource {
            queue: paths.iter().cloned().map(Pending::Path).collect(),
            mbox: None,
        }
    }

    fn expand(&mut self, path: PathBuf) -> Result<(), LocalError> {
        let err = |error| LocalError {
            path: path.display().to_string(),
            error,
        };
        let meta = std::fs::metadata(&path).map_err(err)?;
        if meta.is_dir() {
            let mut found = Vec::new();
            let is_maildir = path.join("new").is_dir() || path.join("cur").is_dir();
            if is_maildir {
                for sub in ["new", "cur"] {
                    let dir = path.join(sub);
                    if dir.is_dir() {
                        found.extend(
                            sorted_files(&dir, |_| true)
                                .map_err(err)?
                                .into_iter()
                                .map(Pending::Message),
                        );
                    }
                }
            } else {
                let eml = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"));
                for f in sorted_files(&path, eml).map_err(err)? {
                    found.push(Pending::Message(f));
                }
            }
            for p in found.into_iter().rev() {
                self.queue.push_front(p);
            }
        } else {
            // An mbox starts with "From " and has LF line ends; a file with neither is one message
            // (classic Mac files use bare CR, which the mbox reader cannot split).
            let mut head = [0u8; 4096];
            let n = File::open(&path).and_then(|mut f| f.read(&mut head)).map_err(err)?;
            let head = head.get(..n).unwrap_or(&[]);
            if head.starts_with(b"From ") && head.contains(&b'\n') {
                self.queue.push_front(Pending::Mbox(path));
            } else {
                self.queue.push_front(Pending::Message(path));
            }
        }
        Ok(())
    }
}

impl Iterator for LocalSource {
    type Item = Result<Item, LocalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((path, iter, n)) = &mut self.mbox {
                match iter.next() {
                    Some(Ok(m)) => {
                        *n += 1;
                        return Some(Ok(Item {
                            source: SOURCE.into(),
                            source_ref: format!("{}#{}", path.display(), n),
                            raw: m.unwrap_contents(),
                        }));
                    }
                    Some(Err(error)) => {
                        let path = path.display().to_string();
                        self.mbox = None;
                        return Some(Err(LocalError { path, error }));
                    }
                    None => self.mbox = None,
                }
            }
            match self.queue.pop_front()? {
                Pending::Path(p) => {
                    if let Err(e) = self.expand(p) {
                        return Some(Err(e));
                    }
                }
                Pending::Message(p) => {
                    return Some(match std::fs::read(&p) {
                        Ok(raw) => Ok(Item {
                            source: SOURCE.into(),
                            source_ref: p.display().to_string(),
                            raw,
                        }),
                        Err(error) => Err(LocalError {
                            path: p.display().to_string(),
                            error,
                        }),
                    });
                }
                Pending::Mbox(p) => match File::open(&p) {
                    Ok(f) => self.mbox = Some((p, MessageIterator::new(BufReader::new(f)), 0)),
                    Err(error) => {
                        return Some(Err(LocalError {
                            path: p.display().to_string(),
                            error,
                        }));
                    }
                },
            }
        }
    }
}

fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_file() && keep(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A Maildir read by the daemon: new messages in, processed ones moved to `cur/`.
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// The Maildir at `root` (its `new/`, `cur/` and `tmp/` are created if missing).
    pub fn open(root: &Path) -> std::io::Result<Maildir> {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Maildir {
            root: root.to_path_buf(),
        })
    }

    /// Messages waiting in `new/`, oldest name first.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        sorted_files(&self.root.join("new"), |_| true)
    }

    /// Marks a committed message done: `new/NAME` -> `cur/NAME:2,S`.
    pub fn mark_done(&self, path: &Path) -> std::io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = name.split(":2,").next().unwrap_or(&name);
        std::fs::rename(path, self.root.join("cur").join(format!("{base}:2,S")))
    }
}
