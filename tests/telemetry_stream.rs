//! The metrics stream under every executor (and none), and the blocking metrics iterator: they
//! track the pool and end when it closes.

// Most scenarios need both facades; with one feature off, some helpers go unused.
#![cfg_attr(
    not(all(feature = "async", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::telemetry::{check_snapshot, counting_pool};
use common::{PATIENCE, ScriptedFactory};
use nexus_pool::ConnectionPool;

// ----- the metrics stream -------------------------------------------------------------------------

#[cfg(feature = "async")]
mod stream {
    use super::*;
    use futures_lite::StreamExt;
    use nexus_pool::MetricsStream;

    const TICK: Duration = Duration::from_millis(5);
    /// An interval no test waits out: a stream that ends must end on the close signal.
    const FOREVER: Duration = Duration::from_secs(3600);

    fn assert_static_send<T: Send + Sync + Unpin + 'static>(_: &T) {}

    /// Runs `scenario` on a tokio current-thread runtime.
    fn on_tokio(scenario: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(scenario);
    }

    /// Runs `scenario` as a task on smol's executor.
    fn on_smol(scenario: impl Future<Output = ()> + Send + 'static) {
        smol::block_on(smol::spawn(scenario));
    }

    /// Three snapshots that track the pool, then the end once it closes.
    async fn three_then_close(pool: ConnectionPool<ScriptedFactory>) {
        let mut stream = pool.metrics_stream(TICK);
        assert_static_send(&stream);
        let first = stream.next().await.unwrap();
        assert_eq!((first.total, first.max), (0, 2));
        let held = pool.acquire().await.unwrap();
        let second = stream.next().await.unwrap();
        assert_eq!((second.total, second.active), (1, 1));
        drop(held);
        let third = stream.next().await.unwrap();
        assert_eq!((third.total, third.idle), (1, 1));
        pool.close_now();
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.next().await, None, "stays ended");
    }

    #[test]
    fn yields_without_a_runtime() {
        let (pool, _) = counting_pool("stream-none", 2);
        futures_lite::future::block_on(three_then_close(pool));
    }

    #[test]
    fn yields_under_tokio_current_thread() {
        let (pool, _) = counting_pool("stream-tokio-ct", 2);
        on_tokio(three_then_close(pool));
    }

    #[test]
    fn yields_under_tokio_multi_thread() {
        let (pool, _) = counting_pool("stream-tokio-mt", 2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async { tokio::spawn(three_then_close(pool)).await.unwrap() });
    }

    #[test]
    fn yields_under_smol() {
        let (pool, _) = counting_pool("stream-smol", 2);
        on_smol(three_then_close(pool));
    }

    #[test]
    fn yields_at_the_interval() {
        let (pool, _) = counting_pool("stream-interval", 2);
        let interval = Duration::from_millis(30);
        let started = Instant::now();
        let n = futures_lite::future::block_on(pool.metrics_stream(interval).take(4).count());
        assert_eq!(n, 4);
        // The first at once, then three intervals.
        assert!(started.elapsed() >= interval * 3, "{:?}", started.elapsed());
    }

    /// A stream waiting out its interval ends as soon as another thread closes the pool. A
    /// stream the close failed to wake fails after `PATIENCE` instead of hanging for an hour.
    async fn ends_at_close_from_another_thread(pool: ConnectionPool<ScriptedFactory>) {
        let mut stream = pool.metrics_stream(FOREVER);
        assert!(
            stream.next().await.is_some(),
            "the first snapshot comes at once"
        );
        let started = Instant::now();
        let closer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            pool.close_now();
        });
        let next = futures_lite::future::or(async { Some(stream.next().await) }, async {
            async_io::Timer::after(PATIENCE).await;
            None
        });
        assert_eq!(next.await, Some(None), "the close ends the stream");
        assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
        closer.join().unwrap();
    }

    #[test]
    fn ends_at_close_not_at_the_next_tick() {
        let (pool, _) = counting_pool("stream-close", 2);
        futures_lite::future::block_on(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_at_close_under_tokio() {
        let (pool, _) = counting_pool("stream-close-tokio", 2);
        on_tokio(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_at_close_under_smol() {
        let (pool, _) = counting_pool("stream-close-smol", 2);
        on_smol(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_when_the_last_handle_is_dropped() {
        let (pool, _) = counting_pool("stream-drop", 2);
        let mut stream = pool.metrics_stream(FOREVER);
        assert!(futures_lite::future::block_on(stream.next()).is_some());
        let reader = thread::spawn(move || futures_lite::future::block_on(stream.count()));
        thread::sleep(Duration::from_millis(30));
        assert!(!reader.is_finished(), "waits for the next tick");
        drop(pool); // the stream holds no handle: this closes the pool
        assert_eq!(reader.join().unwrap(), 0);
    }

    #[test]
    fn ends_at_once_on_a_closed_pool() {
        let (pool, _) = counting_pool("stream-closed", 2);
        pool.close_now();
        let stream: MetricsStream = pool.metrics_stream(TICK);
        assert_eq!(futures_lite::future::block_on(stream.count()), 0);
    }

    #[test]
    fn under_load_every_snapshot_is_sane() {
        let (pool, _) = counting_pool("stream-load", 3);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        futures_lite::future::block_on(async {
                            drop(pool.acquire().await.unwrap());
                        });
                    }
                })
            })
            .collect();
        let seen = futures_lite::future::block_on(
            pool.metrics_stream(Duration::from_millis(1))
                .take(50)
                .inspect(|m| check_snapshot(m, 4))
                .count(),
        );
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(seen, 50);
    }

    #[test]
    #[should_panic(expected = "metrics interval must be non-zero")]
    fn a_zero_interval_panics() {
        let (pool, _) = counting_pool("stream-zero", 2);
        let _ = pool.metrics_stream(Duration::ZERO);
    }

    #[test]
    fn debug_names_the_stream() {
        let (pool, _) = counting_pool("stream-debug", 2);
        let text = format!("{:?}", pool.metrics_stream(TICK));
        assert!(text.starts_with("MetricsStream {"), "{text}");
    }
}

#[cfg(feature = "blocking")]
mod iter {
    use super::*;
    use nexus_pool::MetricsIter;

    #[test]
    fn yields_then_ends_on_close() {
        let (pool, _) = counting_pool("iter", 2);
        let mut snapshots: MetricsIter = pool.metrics_iter(Duration::from_millis(5));
        fn assert_static_send<T: Send + Sync + 'static>(_: &T) {}
        assert_static_send(&snapshots);
        assert_eq!(snapshots.next().unwrap().total, 0);
        let held = pool.acquire_blocking().unwrap();
        assert_eq!(snapshots.next().unwrap().active, 1);
        drop(held);
        pool.close_blocking();
        assert_eq!(snapshots.next(), None);
        assert_eq!(snapshots.next(), None, "stays ended");
    }

    #[test]
    fn ends_at_close_not_at_the_next_tick() {
        let (pool, _) = counting_pool("iter-close", 2);
        let mut snapshots = pool.metrics_iter(Duration::from_secs(3600));
        assert!(
            snapshots.next().is_some(),
            "the first snapshot comes at once"
        );
        let reader = thread::spawn(move || snapshots.count());
        thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "waits for the next tick");
        let started = Instant::now();
        drop(pool); // the iterator holds no handle: this closes the pool
        assert_eq!(reader.join().unwrap(), 0);
        assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    }

    #[test]
    #[should_panic(expected = "metrics interval must be non-zero")]
    fn a_zero_interval_panics() {
        let (pool, _) = counting_pool("iter-zero", 2);
        let _ = pool.metrics_iter(Duration::ZERO);
    }
}
