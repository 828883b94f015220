//! The `secintake` command: CLI parsing, logging, exit codes. All work is in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use secintake::classify::{Kind, NoThreads, Threads};
use secintake::config::Config;
use secintake::fetch::local::LocalSource;
use secintake::pipeline::{Outcome, Pipeline};
use secintake::reply::Templates;
use secintake::store::{self, Store, StoreThreads, cases};
use secintake::{parse, send};

/// Turns mail sent to a security@ address into tracked security cases.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file.
    #[arg(
        long,
        short,
        global = true,
        env = "SECINTAKE_CONFIG",
        default_value = "/etc/secintake/secintake.toml"
    )]
    config: PathBuf,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dry run: classify message files; writes nothing, sends nothing.
    Classify {
        /// One JSON object per file per line.
        #[arg(long)]
        json: bool,
        /// Message files (.eml).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the full pipeline over .eml files, Maildirs and mbox files, then send the outbox.
    Ingest {
        /// Files and folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Deliver what is due in the outbox, then exit.
    Send,
    /// Run as a daemon: read the mailbox (IDLE or polling) and send the outbox until SIGTERM.
    /// SIGHUP reloads config and templates.
    Run,
    /// One pass over the mailbox and the outbox, then exit (cron, tests). Exit code 1 when
    /// anything failed (mailbox unreachable, a message not recorded, mail not delivered).
    Once,
    /// Validate the config; unless --offline, also log in to IMAP and SMTP and report.
    CheckConfig {
        /// Only check the file, do not connect.
        #[arg(long)]
        offline: bool,
    },
    /// Look at and move cases.
    #[command(subcommand)]
    Case(CaseCommand),
}

#[derive(Subcommand)]
enum CaseCommand {
    /// List cases, newest first.
    List {
        /// Only cases in this state.
        #[arg(long)]
        state: Option<String>,
        /// Only cases of this project.
        #[arg(long)]
        project: Option<String>,
        /// JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One case: its messages and timeline.
    Show {
        /// Case id, e.g. SEC-2026-0001.
        id: String,
        /// JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move a case to another state (accepted, rejected, cve, fixed, released, announced).
    State {
        /// Case id.
        id: String,
        /// New state.
        state: String,
        /// Why (recorded on the timeline).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Record an allocated CVE id (moves an accepted case to `cve`).
    Cve {
        /// Case id.
        id: String,
        /// CVE id, e.g. CVE-2026-12345.
        cve: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secintake: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: under systemd stderr is the journal, which shows escape
    // codes as they are.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run => return daemon_run(cli.config),
        Command::Once => {
            let pipeline = secintake::daemon::load(&cli.config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let stats = rt.block_on(secintake::daemon::once(&pipeline))?;
            println!(
                "mailbox: {} recorded, {} duplicates, {} errors{} in {:.2}s; mail: {} sent, {} deferred, {} failed in {:.2}s",
                stats.recorded,
                stats.duplicates,
                stats.errors,
                if stats.fetch_failed {
                    ", mailbox unreachable"
                } else {
                    ""
                },
                stats.fetch_time.as_secs_f64(),
                stats.mail.sent,
                stats.mail.deferred,
                stats.mail.failed,
                stats.send_time.as_secs_f64(),
            );
            return Ok(if stats.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::CheckConfig { offline } => return check_config(&cli, offline),
        _ => {}
    }
    let (config, templates) = secintake::daemon::load_config(&cli.config)?;
    match cli.command {
        Command::Run | Command::Once | Command::CheckConfig { .. } => unreachable!("handled above"),
        Command::Classify { json, files } => classify(config, templates, json, &files),
        Command::Ingest { paths } => ingest(config, templates, &paths),
        Command::Send => {
            let mut store = Store::open(&config.database)?;
            let stats = send_outbox(&config, &mut store)?;
            println!(
                "mail: {} sent, {} deferred, {} failed",
                stats.sent, stats.deferred, stats.failed
            );
            Ok(if stats.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Case(c) => case(config, c),
    }
}

fn classify(config: Config, templates: Templates, json: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let pipeline = Pipeline::new(config, templates);
    // Follow-ups need what the database knows; a dry run only reads it, and never creates it.
    let db = &pipeline.config().database;
    let conn = if db.exists() {
        Some(rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?)
    } else {
        None
    };
    let threads: Box<dyn Threads> = match &conn {
        Some(c) => Box::new(StoreThreads(c)),
        None => Box::new(NoThreads),
    };
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in files {
        let name = file.display().to_string();
        let raw = match std::fs::read(file) {
            Ok(r) => r,
            Err(e) => {
                failed = true;
                if json {
                    writeln!(out, "{}", serde_json::json!({"file": name, "error": e.to_string()}))?;
                } else {
                    eprintln!("{name}: {e}");
                }
                continue;
            }
        };
        let msg = parse::parse(&raw);
        let v = pipeline.classifier().classify(&msg, threads.as_ref());
        if json {
            let line = serde_json::json!({
                "file": name,
                "verdict": v.verdict,
                "reason": v.reason,
                "project": v.project,
                "case": v.case,
                "keywords": v.keywords,
                "signals": v.signals,
            });
            writeln!(out, "{line}")?;
        } else {
            let reason = v.reason.map(|r| format!("/{}", r.as_str())).unwrap_or_default();
            let project = v.project.as_deref().or(v.case.as_deref()).unwrap_or("-");
            writeln!(out, "{name}\t{}{reason}\t{project}", v.verdict.as_str())?;
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[derive(Default)]
struct Totals {
    messages: usize,
    per_kind: [usize; 5],
    duplicates: usize,
    errors: usize,
}

fn ingest(config: Config, templates: Templates, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&config.database).with_context(|| format!("opening {}", config.database.display()))?;
    // No background checkpointer here (see `store::Checkpointer`): reading, recording and the
    // courier already keep both cores busy, and a fourth thread made ingest ~20% slower.
    // Mail goes out while the files are read (see `send::Courier`): the courier runs on a
    // runtime thread of its own, with its own connection, and the pipeline records what it
    // sent.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let policy = send::RetryPolicy::from_config(&config);
    // A transport that cannot be set up (a missing password file, say) is reported when the
    // outbox is sent, after the mail is recorded, as without the courier.
    let transport = rt
        .block_on(async { send::Transport::from_config(&config) })
        .map(Arc::new);
    let mut courier = match &transport {
        Ok(transport) => {
            let reader = Store::open(&config.database)?;
            let (courier, delivering) = send::Courier::start(reader, transport.clone(), policy);
            Some((courier, rt.spawn(delivering)))
        }
        Err(_) => None,
    };
    let pipeline = Pipeline::new(config, templates);
    let mut t = Totals::default();
    // `report` runs on the writer thread: a buffered Stdout (Send), not a StdoutLock.
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let report = |r: secintake::Report<'_, secintake::fetch::local::LocalError>| {
        t.messages += 1;
        let line = match r {
            Err(e) => {
                t.errors += 1;
                format!("{e}\terror")
            }
            Ok((item, Err(e))) => {
                t.errors += 1;
                format!("{}\terror: {e}", item.source_ref)
            }
            Ok((item, Ok(Outcome::Duplicate { of }))) => {
                t.duplicates += 1;
                format!("{}\tduplicate of message {of}", item.source_ref)
            }
            Ok((item, Ok(Outcome::Recorded(rec)))) => {
                let k = rec.verdict.verdict;
                let idx = [
                    Kind::Report,
                    Kind::Followup,
                    Kind::RejectFormat,
                    Kind::RejectOfftopic,
                    Kind::Ignore,
                ]
                .iter()
                .position(|x| *x == k)
                .unwrap_or(4);
                if let Some(n) = t.per_kind.get_mut(idx) {
                    *n += 1;
                }
                let reason = rec
                    .verdict
                    .reason
                    .map(|r| format!("/{}", r.as_str()))
                    .unwrap_or_default();
                let queued: Vec<&str> = rec.queued.iter().map(|q| q.as_str()).collect();
                let mut line = format!(
                    "{}\t{}{reason}\t{}\t{}\t{}",
                    item.source_ref,
                    k.as_str(),
                    rec.case.as_deref().unwrap_or("-"),
                    rec.verdict.project.as_deref().unwrap_or("-"),
                    if queued.is_empty() {
                        "-".to_string()
                    } else {
                        queued.join(",")
                    },
                );
                for (kind, why) in &rec.withheld {
                    line.push_str(&format!(" ({} withheld: {why})", kind.as_str()));
                }
                line
            }
        };
        let _ = writeln!(out, "{line}");
    };
    let source = LocalSource::new(paths);
    let ingested = match &mut courier {
        Some((courier, _)) => secintake::ingest_with(&pipeline, &mut store, source, report, courier),
        None => secintake::ingest(&pipeline, &mut store, source, report),
    };
    // Even if ingesting stopped on an error: what the courier sent is recorded, so it is not
    // sent again.
    let mut stats = send::DrainStats::default();
    if let Some((courier, delivering)) = courier {
        courier.finish();
        match rt.block_on(delivering) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("sending while reading stopped: {e}"),
            Err(e) => tracing::warn!("sending while reading stopped: {e}"),
        }
        stats = courier.record_rest(&mut store)?;
    }
    ingested?;
    let [reports, followups, format, offtopic, ignored] = t.per_kind;
    writeln!(
        out,
        "{} messages: {reports} new cases, {followups} follow-ups, {format} format rejections, {offtopic} off-topic, {ignored} ignored, {} duplicates, {} errors",
        t.messages, t.duplicates, t.errors
    )?;
    out.flush()?;
    // What is still due: deferred mail, and any the courier did not get to.
    let transport = transport?;
    stats.add(rt.block_on(async move {
        let stats = send::drain(&mut store, &transport, &policy).await;
        drop(transport);
        stats
    })?);
    let where_to = match &pipeline.config().smtp.transport {
        secintake::config::Transport::File { dir } => format!(" (written to {})", dir.display()),
        secintake::config::Transport::Smtp(s) => format!(" (via {}:{})", s.host, s.port),
    };
    writeln!(
        out,
        "mail: {} sent{where_to}, {} deferred, {} failed",
        stats.sent, stats.deferred, stats.failed
    )?;
    Ok(if t.errors > 0 || stats.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn daemon_run(path: PathBuf) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            use secintake::daemon::Control;
            loop {
                let c = tokio::select! {
                    _ = term.recv() => Control::Shutdown,
                    _ = int.recv() => Control::Shutdown,
                    _ = hup.recv() => Control::Reload,
                };
                tracing::info!(?c, "signal received");
                if tx.send(c).await.is_err() || c == Control::Shutdown {
                    break;
                }
            }
        });
        secintake::daemon::run(path, rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(cli: &Cli, offline: bool) -> anyhow::Result<ExitCode> {
    let (config, _templates) = secintake::daemon::load_config(&cli.config)?;
    println!("{}: valid ({} projects)", cli.config.display(), config.projects.len());
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut ok = true;
    match &config.mailbox {
        secintake::config::Mailbox::Imap(imap) => {
            let source = secintake::fetch::imap::ImapSource::new(imap.clone());
            match rt.block_on(source.session()) {
                Ok((mut session, sel)) => {
                    println!(
                        "imap: logged in to {}:{} as {}; folder {} holds {} messages (UIDVALIDITY {}); IDLE {}, MOVE {}, UIDPLUS {}",
                        imap.host,
                        imap.port,
                        imap.username,
                        imap.folder,
                        sel.exists,
                        sel.uidvalidity,
                        yes(sel.idle),
                        yes(sel.moves),
                        yes(sel.uidplus)
                    );
                    println!("imap: capabilities {}", sel.capabilities.join(" "));
                    let _ = rt.block_on(session.logout());
                }
                Err(e) => {
                    ok = false;
                    println!("imap: FAILED: {e}");
                }
            }
        }
        secintake::config::Mailbox::Maildir { path } => {
            let n = secintake::fetch::local::Maildir::open(path)
                .and_then(|m| m.pending())
                .map(|p| p.len());
            match n {
                Ok(n) => println!("maildir: {} holds {n} new messages", path.display()),
                Err(e) => {
                    ok = false;
                    println!("maildir: FAILED: {}: {e}", path.display());
                }
            }
        }
    }
    match &config.smtp.transport {
        secintake::config::Transport::Smtp(s) => {
            let result: anyhow::Result<bool> = rt.block_on(async {
                match send::Transport::from_config(&config)? {
                    send::Transport::Smtp(client) => {
                        let mut conn = client.connect().await.map_err(|e| anyhow::anyhow!(e))?;
                        let _ = conn.quit().await;
                        Ok(true)
                    }
                    send::Transport::File(_) => Ok(true),
                }
            });
            match result {
                Ok(true) => println!(
                    "smtp: connected to {}:{} ({:?}){}",
                    s.host,
                    s.port,
                    s.tls,
                    if s.username.is_some() { ", authenticated" } else { "" }
                ),
                Ok(false) => {
                    ok = false;
                    println!("smtp: FAILED: {}:{} did not answer as expected", s.host, s.port);
                }
                Err(e) => {
                    ok = false;
                    println!("smtp: FAILED: {e:#}");
                }
            }
        }
        secintake::config::Transport::File { dir } => {
            println!("smtp: files written to {}", dir.display())
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn send_outbox(config: &Config, store: &mut Store) -> anyhow::Result<send::DrainStats> {
    let policy = send::RetryPolicy::from_config(config);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // lettre's connection pool must be created and dropped inside the runtime.
    rt.block_on(async {
        let transport = send::Transport::from_config(config)?;
        Ok(send::drain(store, &transport, &policy).await?)
    })
}

fn case(config: Config, cmd: CaseCommand) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&config.database)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        CaseCommand::List { state, project, json } => {
            if let Some(s) = &state
                && cases::CaseState::parse(s).is_none()
            {
                anyhow::bail!("unknown state {s:?}; states are {}", state_words());
            }
            let list = cases::list(store.conn(), state.as_deref(), project.as_deref())?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for c in &list {
                    writeln!(
                        out,
                        "{}\t{:<9}\t{:<10}\t{}\t{}",
                        c.id,
                        c.state,
                        c.project.as_deref().unwrap_or("(triage)"),
                        c.reporter,
                        c.subject
                    )?;
                }
                writeln!(out, "{} case(s)", list.len())?;
            }
        }
        CaseCommand::Show { id, json } => {
            let Some(c) = cases::get(store.conn(), &id)? else {
                anyhow::bail!("no case {id}");
            };
            let messages = cases::messages(store.conn(), &id)?;
            let events = cases::events(store.conn(), &id)?;
            if json {
                let v = serde_json::json!({"case": c, "messages": messages, "events": events});
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(out, "{}  [{}]  {}", c.id, c.state, c.subject)?;
                writeln!(out, "project:  {}", c.project.as_deref().unwrap_or("(triage)"))?;
                writeln!(out, "reporter: {}", c.reporter)?;
                if !c.cve.is_empty() {
                    writeln!(out, "cve:      {}", c.cve.join(" "))?;
                }
                writeln!(out, "\nmessages:")?;
                for m in &messages {
                    writeln!(
                        out,
                        "  #{} {} {} <{}> {}",
                        m.id,
                        time_str(m.received_at),
                        m.verdict,
                        m.from,
                        m.subject
                    )?;
                }
                writeln!(out, "\ntimeline:")?;
                for e in &events {
                    writeln!(out, "  {} {:<15} {}", time_str(e.at), e.kind, e.detail)?;
                }
            }
        }
        CaseCommand::State { id, state, note } => {
            let Some(to) = cases::CaseState::parse(&state) else {
                anyhow::bail!("unknown state {state:?}; states are {}", state_words());
            };
            let tx = store.batch()?;
            let from = cases::set_state(&tx, &id, to, &note, store::now())?;
            tx.commit()?;
            writeln!(out, "{id}: {} -> {}", from.as_str(), to.as_str())?;
        }
        CaseCommand::Cve { id, cve } => {
            let valid = cve.len() <= 24
                && cve.strip_prefix("CVE-").is_some_and(|r| {
                    let mut p = r.splitn(2, '-');
                    let (y, n) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
                    y.len() == 4 && n.len() >= 4 && y.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
                });
            if !valid {
                anyhow::bail!("{cve:?} is not a CVE id like CVE-2026-12345");
            }
            let tx = store.batch()?;
            let now = store::now();
            cases::add_cve(&tx, &id, &cve, now)?;
            if cases::state(&tx, &id)? == Some(cases::CaseState::Accepted) {
                cases::set_state(&tx, &id, cases::CaseState::Cve, &cve, now)?;
            }
            tx.commit()?;
            writeln!(out, "{id}: {cve} recorded")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state_words() -> String {
    cases::CaseState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn time_str(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}
