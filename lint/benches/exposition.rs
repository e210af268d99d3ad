//! Lints a 50,000-line exposition shaped like a busy host's scrape: catalogued families
//! with host labels, classic histogram buckets, and a few hundred undeclared series.
//!
//! `cargo bench -p label-lint --bench exposition`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_schema::catalog::Catalog;
use edge_schema::policy::LabelPolicy;
use label_lint::Linter;

const HOST: &str = r#"region="eu-west-1",az="eu-west-1a",cluster="gs-7",instance_type="c6i.2xlarge",build_id="2026.11.3""#;

fn exposition(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 120);
    let mut written = 0;
    let mut family = 0;
    while written < lines {
        out.push_str(&format!("# HELP app_family_{family}_seconds Synthetic family.\n# TYPE app_family_{family}_seconds histogram\n"));
        written += 2;
        for shard in 0..4 {
            for le in [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf",
            ] {
                out.push_str(&format!(
                    "app_family_{family}_seconds_bucket{{{HOST},shard_id=\"{shard}\",le=\"{le}\"}} {}\n",
                    written % 977
                ));
                written += 1;
            }
            out.push_str(&format!(
                "app_family_{family}_seconds_sum{{{HOST},shard_id=\"{shard}\"}} 12.5\n"
            ));
            out.push_str(&format!(
                "app_family_{family}_seconds_count{{{HOST},shard_id=\"{shard}\"}} 977\n"
            ));
            written += 2;
        }
        family += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let text = exposition(50_000);
    let lines = text.lines().count();
    let linter = Linter::new(LabelPolicy::shipped(), Catalog::shipped());
    let mut group = c.benchmark_group("exposition");
    group.throughput(Throughput::Elements(lines as u64));
    group.sample_size(20);
    group.bench_function("lint_50k_lines", |b| {
        b.iter(|| black_box(linter.lint_exposition(Path::new("bench.prom"), black_box(&text))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
