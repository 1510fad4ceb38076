//! Lists of stored records, newest first (`store::listing`): the first page of 100 of N stored records
//! whose list views are ~1 KB each (a job's view with its latest epoch is 1-2 KB), on sled, for N =
//! 1,000, 10,000 and 50,000. `unfiltered` is what `GET /v1/jobs`, `/v1/students` and `/v1/rankings` do
//! without a filter: read the order keys last first and only the page's views. `every_view` is a
//! filtered list (`?state=...`): one pass over every view, the page kept in a heap. `last_page` is the
//! unfiltered list's last page, to show a deep page costs what the first does.
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use faculty::store::Store;
use faculty::store::listing::{Listed, Listing, Paging};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Rec {
    id: String,
    created: u64,
    state: String,
    body: String,
}

impl Listed for Rec {
    fn created(&self) -> u64 {
        self.created
    }
    fn id(&self) -> &str {
        &self.id
    }
}

fn filled(n: usize) -> Listing<Rec> {
    let store = Store::temporary().unwrap();
    let l = Listing::open(store.tree("things").unwrap(), |r: &Rec| r.clone()).unwrap();
    for i in 0..n {
        let id = format!(
            "job_{:016x}",
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let r = Rec {
            id: id.clone(),
            created: 1_700_000_000 + i as u64 / 10,
            state: if i % 3 == 0 { "failed" } else { "succeeded" }.into(),
            body: "x".repeat(1000),
        };
        l.put(&id, &r).unwrap();
    }
    l
}

fn page(size: usize, token: Option<&str>) -> Paging<'_> {
    Paging {
        page_size: Some(size),
        page_token: token,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("listing");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [1_000, 10_000, 50_000] {
        let l = filled(n);
        g.bench_with_input(BenchmarkId::new("unfiltered", n), &n, |b, _| {
            b.iter(|| l.page(page(100, None), |v| v, None).unwrap())
        });
        let all = |_: &Rec| true;
        g.bench_with_input(BenchmarkId::new("every_view", n), &n, |b, _| {
            b.iter(|| l.page(page(100, None), |v| v, Some(&all)).unwrap())
        });
        // the token of the last page of 100, found once by walking them all
        let mut token: Option<String> = None;
        while let (_, Some(next), _) = l.page(page(100, token.as_deref()), |v| v, None).unwrap() {
            token = Some(next);
        }
        g.bench_with_input(BenchmarkId::new("last_page", n), &n, |b, _| {
            b.iter(|| l.page(page(100, token.as_deref()), |v| v, None).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
