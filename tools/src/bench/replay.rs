//! Replay speed: every transcript under qemu-fixtures replayed N times.

use std::path::{Path, PathBuf};
use std::time::Instant;

use postcopy_core::transcript::ReplayTransport;

/// What the replay table shows.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    pub files: usize,
    pub n: usize,
    pub replays: usize,
    /// Replays that ended in an error (a divergence); expected 0 for the committed fixtures.
    pub errors: usize,
    /// Time of the N x files replays, parse excluded, s.
    pub replay_s: f64,
    /// One suite pass: load + parse + replay of every file, ms (median of N passes).
    pub suite_ms: f64,
    /// Per transcript replay, µs: median, max.
    pub per_median_us: f64,
    pub per_max_us: f64,
    pub records: usize,
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            // Edited recordings (qemu-fixtures/mutated) stop where the edit leaves the driver.
            if !p.ends_with("mutated") {
                find(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
}

/// Replays every `*.jsonl` under `dir` `n` times.
pub fn run(dir: &Path, n: usize) -> Result<ReplayStats, super::BenchError> {
    let mut files = Vec::new();
    find(dir, &mut files);
    files.sort();
    if files.is_empty() {
        return Err(super::BenchError::NoTranscripts(dir.to_path_buf()));
    }
    let mut loaded = Vec::new();
    for f in &files {
        loaded.push(postcopy_shim::load_transcript(f)?);
    }
    let records = loaded.iter().map(|t| t.records.len()).sum();
    let mut s = ReplayStats {
        files: files.len(),
        n,
        records,
        ..ReplayStats::default()
    };
    let mut per = Vec::new();
    let all = Instant::now();
    for _ in 0..n {
        for t in &loaded {
            let t = t.clone();
            let one = Instant::now();
            let (_, err) = ReplayTransport::new(t).replay_all();
            per.push(one.elapsed().as_secs_f64() * 1e6);
            s.replays += 1;
            if err.is_some() {
                s.errors += 1;
            }
        }
    }
    s.replay_s = all.elapsed().as_secs_f64();
    let mut suites = Vec::new();
    for _ in 0..n.max(1) {
        let t0 = Instant::now();
        for f in &files {
            let t = postcopy_shim::load_transcript(f)?;
            let _ = ReplayTransport::new(t).replay_all();
        }
        suites.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    s.suite_ms = super::mmm(&suites).map(|m| m.0).unwrap_or(0.0);
    if let Some((med, _, max)) = super::mmm(&per) {
        s.per_median_us = med;
        s.per_max_us = max;
    }
    Ok(s)
}
