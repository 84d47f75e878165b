//! Background maintenance, creating connections: start-up (`build_connected`, `min_connections`),
//! creates that fail or time out (backoff, recovery, no create made for nobody), and bursts
//! (`max_concurrent_creates`).
//!
//! Every callback is driven by the scripted factory of `tests/common/factory.rs`; the pool and
//! its event recorder come from `tests/common/maintenance.rs`. Connection ages are driven by a
//! `ManualClock` and `sweep_idle()` where the test is about an age; elsewhere the configured
//! times are short (tens to hundreds of milliseconds) and whatever another thread does is awaited
//! with `wait_until`, a bounded poll that fails naming what it waited for. No test asserts an
//! upper bound on elapsed time tighter than seconds.
//!
//! Behaviour reachable from both facades is exercised through both (`Facade`).

// Both facades are used throughout.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use common::facade::{FACADES, acquire_via};
use common::maintenance::*;
use common::wait::wait_until_state;
use common::{Behavior, Op, PATIENCE, Script, ScriptedFactory, quiet_scripted_panics, wait_until};
use futures_lite::future::{self, block_on};
use nexus_pool::{ConnectionPool, CreateError, PoolError};

// ----- start-up ---------------------------------------------------------------------------------

#[test]
fn build_connected_starts_full() {
    let (factory, script) = ScriptedFactory::new();
    let config = base(5).min_connections(3).build().unwrap();
    let pool = block_on(
        ConnectionPool::builder(factory)
            .config(config)
            .build_connected(),
    )
    .unwrap();
    assert_idle(&pool, 3, "full when it returns");
    assert_eq!(script.live(), 3);
}

#[test]
fn build_connected_fails_when_connections_cannot_be_made() {
    quiet_scripted_panics();
    for behavior in [Behavior::Fail, Behavior::Hang, Behavior::Panic] {
        let (factory, script) = ScriptedFactory::new();
        // Two connections are made, then the third create goes wrong.
        script.push(Op::Create, [Behavior::Succeed, Behavior::Succeed]);
        script.set(Op::Create, behavior);
        let config = base(5)
            .min_connections(3)
            .create_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let result = block_on(
            ConnectionPool::builder(factory)
                .config(config)
                .build_connected(),
        );
        let err = match result {
            Err(PoolError::Create(err)) => err,
            other => panic!("{behavior:?}: expected PoolError::Create, got {other:?}"),
        };
        match (behavior, &err) {
            (Behavior::Fail, CreateError::Failed(e)) => assert_eq!(e.0, 3),
            (Behavior::Hang, CreateError::TimedOut(d)) => {
                assert_eq!(*d, Duration::from_millis(100))
            }
            (Behavior::Panic, CreateError::Panicked) => {}
            _ => panic!("{behavior:?}: unexpected error {err:?}"),
        }
        assert_eq!(script.created(), 2);
        assert_eq!(script.live(), 0, "{behavior:?}: what was made is closed");
        assert_eq!(script.calls(Op::Destroy), 2);
        assert!(script.factory_dropped(), "{behavior:?}: nothing kept");
    }
}

#[test]
fn build_starts_without_the_database_and_fills_when_it_returns() {
    let config = base(4)
        .min_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Fail)
    });
    assert!(!pool.is_closed());
    wait_until("the pool tries to connect", || script.calls(Op::Create) > 0);
    for how in FACADES {
        let err = acquire_via(&pool, how).map(|c| c.id).unwrap_err();
        assert!(
            err.create_error().is_some(),
            "{how:?}: carries the create error"
        );
        let t = expect_timeout::<()>(Err(err));
        assert!(matches!(t.last_create_error, Some(CreateError::Failed(_))));
    }

    script.set(Op::Create, Behavior::Succeed);
    wait_until("the pool fills in the background", || {
        idle(&pool) == 2 && script.live() == 2
    });
    for how in FACADES {
        drop(acquire_via(&pool, how).unwrap());
    }
}

// ----- failing creates --------------------------------------------------------------------------

#[test]
fn hung_create_with_more_waiters_than_max_then_recovery() {
    const WAITERS: usize = 6;
    let create_timeout = Duration::from_millis(100);
    let acquire_timeout = Duration::from_millis(1500);
    let config = base(2)
        .max_concurrent_creates(2)
        .create_timeout(create_timeout)
        .acquire_timeout(acquire_timeout)
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Hang)
    });

    let outcomes: Vec<_> = thread::scope(|s| {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let pool = &pool;
                s.spawn(move || {
                    let started = Instant::now();
                    let result = acquire_via(pool, FACADES[i % 2]).map(|c| c.id);
                    (result, started.elapsed())
                })
            })
            .collect();
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (result, waited) in outcomes {
        let t = expect_timeout(result);
        match t.last_create_error {
            Some(CreateError::TimedOut(d)) => assert_eq!(d, create_timeout),
            other => panic!("expected the create time-out, got {other:?}"),
        }
        assert!(
            waited >= acquire_timeout && waited < acquire_timeout + Duration::from_secs(5),
            "a hung create does not hold a caller past acquire_timeout (waited {waited:?})"
        );
    }
    assert!(script.peak_running(Op::Create) <= 2);
    wait_until("hung creates give their places back", || {
        total(&pool) == 0 && script.running(Op::Create) == 0
    });

    // The database answers again: everyone is served, no restart.
    script.set(Op::Create, Behavior::Succeed);
    let served: Vec<_> = thread::scope(|s| {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let pool = &pool;
                s.spawn(move || {
                    let conn = acquire_via(pool, FACADES[i % 2]).unwrap();
                    thread::sleep(Duration::from_millis(10));
                    conn.id
                })
            })
            .collect();
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(served.len(), WAITERS);
    assert!(script.peak() <= 2, "peak {} > max 2", script.peak());
}

/// Keeps `waiters` callers asking during an outage of about `outage`, then heals the factory;
/// returns (connects attempted during the outage, the outage's length, the documented bound).
fn outage(
    max_concurrent_creates: usize,
    waiters: usize,
    outage: Duration,
) -> (usize, Duration, f64) {
    let (initial, longest) = (Duration::from_millis(10), Duration::from_millis(100));
    let config = base(8)
        .max_concurrent_creates(max_concurrent_creates)
        .create_backoff(initial, longest)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Fail)
    });
    let healed = AtomicBool::new(false);
    let (attempts, length) = thread::scope(|s| {
        let callers: Vec<_> = (0..waiters)
            .map(|i| {
                let (pool, script, healed) = (&pool, &script, &healed);
                s.spawn(move || {
                    loop {
                        let failing = !healed.load(SeqCst) && script.calls(Op::Create) > 0;
                        match acquire_via(pool, FACADES[i % 2]) {
                            Ok(conn) => {
                                thread::sleep(Duration::from_millis(5));
                                return conn.id;
                            }
                            // Healed while this caller waited: a create may have succeeded and
                            // cleared the error before its deadline.
                            Err(PoolError::Timeout(t)) => assert!(
                                !failing
                                    || healed.load(SeqCst)
                                    || matches!(t.last_create_error, Some(CreateError::Failed(_))),
                                "a caller timing out during the outage gets the create error: {t:?}"
                            ),
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                        assert!(
                            started.elapsed() < PATIENCE,
                            "a caller was not served after the outage"
                        );
                    }
                })
            })
            .collect();
        thread::sleep(outage);
        let attempts = script.calls(Op::Create);
        let length = started.elapsed();
        // Marked healed first, so that a caller who sees it unset knows no create has succeeded.
        healed.store(true, SeqCst);
        script.set(Op::Create, Behavior::Succeed);
        for caller in callers {
            caller.join().unwrap();
        }
        (attempts, length)
    });
    assert!(script.peak() <= 8);
    assert!(script.peak_running(Op::Create) <= max_concurrent_creates);
    // The bound from the module docs of `src/maintenance.rs`:
    // `max_concurrent_creates + log2(max / initial) + 2 * T / max`.
    let bound = max_concurrent_creates as f64
        + (longest.as_secs_f64() / initial.as_secs_f64()).log2()
        + 2.0 * length.as_secs_f64() / longest.as_secs_f64();
    eprintln!(
        "max_concurrent_creates {max_concurrent_creates}: {attempts} connects in {length:?}, bound {bound:.1}"
    );
    (attempts, length, bound)
}

#[test]
fn create_outage_then_recovery_stays_within_the_documented_connect_bound() {
    // With one create at a time the pauses alone bound it: after the ramp (10, 20, 40, 80 ms,
    // each at least halved by jitter) at least 50 ms pass between connects.
    let (attempts, length, bound) = outage(1, 8, Duration::from_millis(1500));
    assert!(
        attempts as f64 <= bound,
        "{attempts} connects during a {length:?} outage, documented bound {bound:.1}"
    );
    assert!(attempts >= 5, "backoff still retries ({attempts} connects)");
}

#[test]
fn create_outage_with_concurrent_creates_stays_within_the_documented_connect_bound() {
    // Four creates per pause of 50..100 ms: about twice the bound.
    let (attempts, length, bound) = outage(4, 16, Duration::from_millis(1500));
    assert!(
        attempts as f64 <= bound,
        "{attempts} connects during a {length:?} outage, documented bound {bound:.1}"
    );
}

#[test]
fn connection_created_for_a_caller_that_gave_up_goes_idle() {
    // Async: the caller gives up (drops its acquire) once the create made for it has started.
    let (pool, script, _) = start_with(base(1).build().unwrap(), Options::default(), |s| {
        s.set(Op::Create, Behavior::Slow(Duration::from_millis(500)))
    });
    let gave_up = async {
        while script.running(Op::Create) == 0 {
            Timer::after(Duration::from_millis(2)).await;
        }
        None
    };
    let got = block_on(future::or(
        async { Some(pool.acquire().await.map(|c| c.id)) },
        gave_up,
    ));
    assert!(got.is_none(), "gave up while the create ran: {got:?}");
    check_made_for_nobody(&pool, &script);

    // Blocking: the caller gives up at acquire_timeout. A try in which the maintenance thread had
    // not even started the create by then (it was not scheduled in time) proves nothing and is
    // repeated.
    for attempt in 1.. {
        let config = base(1)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let (pool, script, _) = start_with(config, Options::default(), |s| {
            s.set(Op::Create, Behavior::Slow(Duration::from_millis(800)))
        });
        expect_timeout(pool.acquire_blocking());
        if script.calls(Op::Create) > 0 {
            check_made_for_nobody(&pool, &script);
            break;
        }
        assert!(
            attempt < 5,
            "the create never started within acquire_timeout"
        );
    }
}

/// The one create started for a caller that left ends as an idle connection.
#[track_caller]
fn check_made_for_nobody(pool: &Pool, script: &Script) {
    wait_until_state(
        "the connection made for nobody is idle",
        || idle(pool) == 1,
        || state(pool, script),
    );
    let conn = pool.try_acquire().unwrap();
    assert_eq!(conn.id, 0);
    assert_eq!((script.calls(Op::Create), script.created()), (1, 1));
}

#[test]
fn connection_created_for_a_caller_that_gave_up_goes_to_the_next_waiter() {
    let config = base(1).build().unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Slow(Duration::from_secs(1)))
    });
    let quit = AtomicBool::new(false);
    let (quitter, patient) = thread::scope(|s| {
        let quitter = s.spawn(|| {
            let gave_up = async {
                while !quit.load(SeqCst) {
                    Timer::after(Duration::from_millis(2)).await;
                }
                None
            };
            block_on(future::or(
                async { Some(pool.acquire().await.map(|c| c.id)) },
                gave_up,
            ))
        });
        wait_until("the first caller waits", || {
            pool.current_metrics().waiting == 1
        });
        let patient = s.spawn(|| pool.acquire_blocking().map(|c| c.id));
        wait_until("the second caller waits", || {
            pool.current_metrics().waiting == 2
        });
        quit.store(true, SeqCst);
        (quitter.join().unwrap(), patient.join().unwrap())
    });
    assert!(quitter.is_none(), "the first caller gave up");
    assert_eq!(patient.unwrap(), 0, "the next waiter got the connection");
    assert_eq!((script.calls(Op::Create), script.created()), (1, 1));
}

// ----- bursts -----------------------------------------------------------------------------------

/// Far fewer than `max_connections` (50): a short spike is served by the warm connections.
const BURST_PEAK_LIMIT: usize = 25;

/// A pool of max 50 with 5 warm connections and creates that take 100 ms.
fn burst_pool(max_concurrent_creates: usize) -> (Pool, Arc<Script>) {
    let config = base(50)
        .min_connections(5)
        .max_concurrent_creates(max_concurrent_creates)
        .build()
        .unwrap();
    let (pool, script, _) = start(config);
    wait_until("5 warm", || idle(&pool) == 5);
    script.set(Op::Create, Behavior::Slow(Duration::from_millis(100)));
    (pool, script)
}

/// 50 threads at once each take a connection for 2 ms.
fn burst_blocking(pool: &Pool) {
    let start = Barrier::new(50);
    thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                start.wait();
                let conn = pool.acquire_blocking().unwrap();
                thread::sleep(Duration::from_millis(2));
                drop(conn);
            });
        }
    });
}

/// 50 tasks at once each take a connection for 2 ms.
fn burst_async(pool: &Pool) {
    smol::block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let pool = pool.clone();
                smol::spawn(async move {
                    let conn = pool.acquire().await.unwrap();
                    Timer::after(Duration::from_millis(2)).await;
                    drop(conn);
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
}

/// Once the creates started during the burst have finished, the pool is far below its max.
#[track_caller]
fn check_burst_peak(script: &Script, max_concurrent_creates: usize) {
    wait_until("the creates started during the burst finish", || {
        script.running(Op::Create) == 0
    });
    assert!(
        script.peak() <= BURST_PEAK_LIMIT,
        "a burst of 50 short holds grew the pool to {} (max_concurrent_creates {})",
        script.peak(),
        max_concurrent_creates
    );
    assert!(script.peak_running(Op::Create) <= max_concurrent_creates);
}

#[test]
fn burst_is_served_by_warm_connections_blocking() {
    let (pool, script) = burst_pool(2);
    burst_blocking(&pool);
    check_burst_peak(&script, 2);
}

#[test]
fn burst_is_served_by_warm_connections_async() {
    let (pool, script) = burst_pool(2);
    burst_async(&pool);
    check_burst_peak(&script, 2);
}
