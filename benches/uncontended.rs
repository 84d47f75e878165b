//! The uncontended acquire + release cycle of each facade, against the floor: a bare
//! `crossbeam_queue::ArrayQueue` pop + push, measured in the same run. Each owned facade runs
//! right after its borrowed twin, so their ratio (the owned guard's one reference-count
//! increment and decrement) comes from close samples.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};

struct Counter;

impl ConnectionFactory for Counter {
    type Connection = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(7)
    }
}

fn pool(config: ConnectionPoolConfig) -> ConnectionPool<Counter> {
    let pool = ConnectionPool::new(Counter, config);
    // Warm: one idle connection, so every cycle below is served from the idle queue.
    drop(pool.try_acquire());
    futures_lite::future::block_on(async { drop(pool.acquire().await.unwrap()) });
    pool
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended");
    let floor = ArrayQueue::new(10);
    floor.push(7u64).unwrap();
    let default_pool = pool(ConnectionPoolConfig::default());
    let bare_pool = pool(
        ConnectionPoolConfig::builder()
            .max_lifetime(None)
            .idle_timeout(None)
            .checkout_validation(nexus_pool::CheckoutValidation::Never)
            .build()
            .unwrap(),
    );
    // Interleaved: each target runs right after the floor, so ratios come from close samples.
    for round in 0..2 {
        group.bench_function(format!("floor_arrayqueue/{round}"), |b| {
            b.iter(|| {
                let v = floor.pop().unwrap();
                floor.push(black_box(v)).unwrap();
            })
        });
        group.bench_function(format!("nexus_blocking/{round}"), |b| {
            b.iter(|| black_box(default_pool.acquire_blocking().unwrap()))
        });
        group.bench_function(format!("nexus_owned_blocking/{round}"), |b| {
            b.iter(|| black_box(default_pool.acquire_owned_blocking().unwrap()))
        });
        // As a task runs it: many acquires inside one `block_on`, so the executor's entry cost
        // (a thread-local parker and waker per `block_on`) is not counted as the pool's.
        group.bench_function(format!("nexus_async/{round}"), |b| {
            b.iter_custom(|iters| {
                futures_lite::future::block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(default_pool.acquire().await.unwrap()));
                    }
                    started.elapsed()
                })
            })
        });
        group.bench_function(format!("nexus_owned_async/{round}"), |b| {
            b.iter_custom(|iters| {
                futures_lite::future::block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(default_pool.acquire_owned().await.unwrap()));
                    }
                    started.elapsed()
                })
            })
        });
        group.bench_function(format!("nexus_try/{round}"), |b| {
            b.iter(|| black_box(default_pool.try_acquire().unwrap()))
        });
        group.bench_function(format!("nexus_owned_try/{round}"), |b| {
            b.iter(|| black_box(default_pool.try_acquire_owned().unwrap()))
        });
        group.bench_function(format!("nexus_blocking_no_clock/{round}"), |b| {
            b.iter(|| black_box(bare_pool.acquire_blocking().unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
