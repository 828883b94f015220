//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use secintake::config::Config;

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
