//! Parse + classify throughput over a realistic security@ mix.
//!
//!     cargo bench --bench classify
//!
//! The mix is made at start by `scripts/gen-mix.py --count 2000` in a temporary folder
//! (median message ~4 KB, p90 ~20 KB, ~0.5% over 500 KB, two near 2 MB), or read from the
//! folder named by `SECINTAKE_BENCH_MIX` (every `*.eml` in it). `SECINTAKE_BENCH_COUNT`
//! changes the generated count. Three groups, each reporting messages/s (`Throughput::Elements`):
//!
//! - `parse_classify/mix`: per message, `parse::parse` then `Classifier::classify` with
//!   [`NoThreads`] — the pure, per-core work of the pipeline (no SQLite, no reply rendering);
//! - `parse/mix`: `parse::parse` alone;
//! - `classify/mix`: `classify` alone, on messages parsed beforehand.
//!
//! The target (from the issue) is at least 20,000 messages/s for `parse_classify` on one core;
//! it lives here, never in a test. Under `cargo test --benches` (criterion's test mode, run by
//! CI's `cargo test --all-targets`) each routine runs once on a 50-message mix.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use secintake::classify::{Classifier, Kind, NoThreads};
use secintake::config::Config;
use secintake::parse::{self, Inbound};

struct Mix {
    messages: Vec<Vec<u8>>,
    bytes: usize,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("eml")))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
        .collect()
}

fn load_mix() -> Mix {
    let messages = if let Some(dir) = std::env::var_os("SECINTAKE_BENCH_MIX") {
        read_dir(Path::new(&dir))
    } else {
        // criterion benchmarks for real only under `cargo bench` (which passes --bench);
        // `cargo test --benches` runs each routine once, so a small mix will do.
        let benching = std::env::args().any(|a| a == "--bench");
        let count = std::env::var("SECINTAKE_BENCH_COUNT")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(if benching { 2000 } else { 50 });
        let tmp = tempfile::tempdir().expect("temporary folder");
        let status = Command::new("python3")
            .arg(root().join("scripts/gen-mix.py"))
            .args(["--count", &count.to_string(), "--quiet", "--out"])
            .arg(tmp.path())
            .status()
            .expect("running python3 scripts/gen-mix.py (is python3 installed?)");
        assert!(status.success(), "scripts/gen-mix.py failed: {status}");
        read_dir(tmp.path())
    };
    assert!(!messages.is_empty(), "the mix is empty");
    let bytes = messages.iter().map(Vec::len).sum();
    Mix { messages, bytes }
}

fn classifier() -> Classifier {
    let config = Config::load(&root().join("config/demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    Classifier::new(&config)
}

/// What the mix comes to, printed once so a run shows what it measured.
fn describe(mix: &Mix, parsed: &[Inbound], classifier: &Classifier) {
    let kinds = [
        Kind::Report,
        Kind::Followup,
        Kind::RejectFormat,
        Kind::RejectOfftopic,
        Kind::Ignore,
    ];
    let mut counts = [0usize; 5];
    for msg in parsed {
        let v = classifier.classify(msg, &NoThreads);
        if let Some(n) = kinds
            .iter()
            .position(|k| *k == v.verdict)
            .and_then(|i| counts.get_mut(i))
        {
            *n += 1;
        }
    }
    let mut sizes: Vec<usize> = mix.messages.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    let at = |p: usize| sizes.get((sizes.len() - 1) * p / 100).copied().unwrap_or(0);
    let verdicts: Vec<String> = kinds
        .iter()
        .zip(counts)
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    eprintln!(
        "mix: {} messages, {:.1} MiB; median {} B, p90 {} B, p99 {} B, max {} B; verdicts: {}",
        mix.messages.len(),
        mix.bytes as f64 / (1024.0 * 1024.0),
        at(50),
        at(90),
        at(99),
        at(100),
        verdicts.join(", ")
    );
}

fn benches(c: &mut Criterion) {
    let mix = load_mix();
    let classifier = classifier();
    let parsed: Vec<Inbound> = mix.messages.iter().map(|m| parse::parse(m)).collect();
    describe(&mix, &parsed, &classifier);
    let n = mix.messages.len() as u64;

    let configure = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>| {
        g.throughput(Throughput::Elements(n))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10));
    };

    let mut g = c.benchmark_group("parse_classify");
    configure(&mut g);
    g.bench_function("mix", |b| {
        b.iter(|| {
            for raw in &mix.messages {
                let inbound = parse::parse(black_box(raw));
                black_box(classifier.classify(&inbound, &NoThreads));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    configure(&mut g);
    g.bench_function("mix", |b| {
        b.iter(|| {
            for raw in &mix.messages {
                black_box(parse::parse(black_box(raw)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("classify");
    configure(&mut g);
    g.bench_function("mix", |b| {
        b.iter(|| {
            for msg in &parsed {
                black_box(classifier.classify(black_box(msg), &NoThreads));
            }
        })
    });
    g.finish();
}

criterion_group!(classify_benches, benches);
criterion_main!(classify_benches);
