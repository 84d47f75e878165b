//! The test factory: one factory and health check whose every callback can be told, at run time,
//! to succeed, fail, be slow, hang, wait at a gate, block its thread or panic. It keeps the ids
//! of the live connections (so the peak, and which ones were replaced), counts calls per
//! callback (and those the pool abandoned), and records the thread each call ran on.
//!
//! ```ignore
//! let (pool, script) = common::pool(common::config(2)); // or:
//! let (factory, script) = ScriptedFactory::new();
//! let pool = ConnectionPool::builder(factory).health_check(script.health()).build()?;
//! script.set(Op::Create, Behavior::Fail); // every create fails from now on
//! script.push(Op::Reset, [Behavior::Panic]); // the next reset panics, later ones succeed
//! ```
//!
//! A connection counts as live from its create until it is dropped, by the factory's `destroy`
//! or by whoever holds it (a detached connection is live until its owner drops it).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use nexus_pool::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, PoolError};

use super::sync::lock;

/// A pool over the test factory, and what its acquires fail with.
pub type Pool = ConnectionPool<ScriptedFactory>;
pub type Error = PoolError<Refused>;

/// A user callback of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Validate,
    IsHealthy,
    Reset,
    Destroy,
}

const OPS: usize = 5;

/// What a callback does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answers at once: a connection, `true`.
    Succeed,
    /// Answers at once: an error, `false` (for `destroy`: returns without closing).
    Fail,
    /// Sleeps this long on an `async_io` timer (the thread is not blocked), then succeeds.
    Slow(Duration),
    /// Sleeps a random time below this on an `async_io` timer, then succeeds.
    Jitter(Duration),
    /// Never finishes.
    Hang,
    /// Waits until the test opens the gate ([`Script::open_gate`]), then succeeds.
    Gated,
    /// Blocks its thread this long inside `poll` (`std::thread::sleep`, as a blocking driver's
    /// I/O would), then succeeds.
    Block(Duration),
    /// Panics with a message starting with "scripted panic".
    Panic,
}

/// What `create` fails with: the attempt's number (from 1, failed attempts included).
#[derive(Debug, thiserror::Error)]
#[error("scripted create failure #{0}")]
pub struct Refused(pub usize);

/// The shared script and the counts; the test keeps an `Arc` of it.
#[derive(Debug)]
pub struct Script {
    /// The standing behaviour of each op, used once its queue is empty.
    standing: Mutex<[Behavior; OPS]>,
    /// Behaviours for the next calls of each op, taken first.
    queued: Mutex<[VecDeque<Behavior>; OPS]>,
    calls: [AtomicUsize; OPS],
    running: [AtomicUsize; OPS],
    peak_running: [AtomicUsize; OPS],
    /// Calls dropped before they finished (the pool gave up on them).
    abandoned: [AtomicUsize; OPS],
    /// Threads each call started on, in call order.
    threads: Mutex<Vec<(Op, ThreadId, Option<String>)>>,
    /// Whether `Behavior::Gated` calls may go on, and the wakers of those waiting.
    gate: Mutex<(bool, Vec<Waker>)>,
    /// Connections created so far (the next id).
    created: AtomicUsize,
    /// Ids of connections that exist (created, not yet dropped).
    live: Mutex<BTreeSet<usize>>,
    peak: AtomicUsize,
    /// Connections with an id below this are dead: `validate`, `is_healthy` and `reset` say no.
    dead_below: AtomicUsize,
    /// Single connections made dead.
    dead: Mutex<BTreeSet<usize>>,
    factory_dropped: AtomicBool,
}

impl Script {
    fn new() -> Self {
        Script {
            standing: Mutex::new([Behavior::Succeed; OPS]),
            queued: Mutex::default(),
            calls: Default::default(),
            running: Default::default(),
            peak_running: Default::default(),
            abandoned: Default::default(),
            threads: Mutex::default(),
            gate: Mutex::default(),
            created: AtomicUsize::new(0),
            live: Mutex::default(),
            peak: AtomicUsize::new(0),
            dead_below: AtomicUsize::new(0),
            dead: Mutex::default(),
            factory_dropped: AtomicBool::new(false),
        }
    }

    /// Sets what every later call of `op` does (after any queued behaviours).
    pub fn set(&self, op: Op, behavior: Behavior) {
        lock(&self.standing)[op as usize] = behavior;
    }

    /// Queues behaviours for the next calls of `op`, one call each.
    pub fn push(&self, op: Op, behaviors: impl IntoIterator<Item = Behavior>) {
        lock(&self.queued)[op as usize].extend(behaviors);
    }

    /// Lets every `Behavior::Gated` call, waiting or to come, go on.
    pub fn open_gate(&self) {
        let wakers = {
            let mut gate = lock(&self.gate);
            gate.0 = true;
            std::mem::take(&mut gate.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_gate(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut gate = lock(&self.gate);
        if gate.0 {
            Poll::Ready(())
        } else {
            gate.1.push(cx.waker().clone());
            Poll::Pending
        }
    }

    /// A health check driven by this script.
    pub fn health(self: &Arc<Self>) -> ScriptedHealth {
        ScriptedHealth {
            script: self.clone(),
        }
    }

    /// Calls of `op` so far (started, whether they finished or not).
    pub fn calls(&self, op: Op) -> usize {
        self.calls[op as usize].load(SeqCst)
    }

    /// Calls of `op` in progress now (a call whose future was dropped is no longer in progress).
    pub fn running(&self, op: Op) -> usize {
        self.running[op as usize].load(SeqCst)
    }

    /// The most calls of `op` ever in progress at once.
    pub fn peak_running(&self, op: Op) -> usize {
        self.peak_running[op as usize].load(SeqCst)
    }

    /// Calls of `op` whose future was dropped before they finished.
    pub fn abandoned(&self, op: Op) -> usize {
        self.abandoned[op as usize].load(SeqCst)
    }

    /// The threads the calls of `op` started on: id and name.
    pub fn threads(&self, op: Op) -> Vec<(ThreadId, Option<String>)> {
        lock(&self.threads)
            .iter()
            .filter(|(o, _, _)| *o == op)
            .map(|(_, id, name)| (*id, name.clone()))
            .collect()
    }

    /// Connections created so far (failed creates not included: see `calls(Op::Create)`).
    pub fn created(&self) -> usize {
        self.created.load(SeqCst)
    }

    /// `destroy` calls so far.
    pub fn destroyed(&self) -> usize {
        self.calls(Op::Destroy)
    }

    /// Connections that exist now: created and not yet dropped (by `destroy` or otherwise).
    pub fn live(&self) -> usize {
        lock(&self.live).len()
    }

    /// The ids of the connections that exist now.
    pub fn live_ids(&self) -> BTreeSet<usize> {
        lock(&self.live).clone()
    }

    /// The most connections that ever existed at once.
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }

    /// Kills every connection made so far, as a database restart would.
    pub fn kill_all(&self) {
        self.dead_below.store(self.created(), SeqCst);
    }

    /// Kills one connection.
    pub fn kill(&self, id: usize) {
        lock(&self.dead).insert(id);
    }

    /// Whether connection `id` has been killed.
    pub fn is_dead(&self, id: usize) -> bool {
        id < self.dead_below.load(SeqCst) || lock(&self.dead).contains(&id)
    }

    /// Whether the factory has been dropped (the pool let go of it).
    pub fn factory_dropped(&self) -> bool {
        self.factory_dropped.load(SeqCst)
    }

    fn next_behavior(&self, op: Op) -> Behavior {
        let queued = lock(&self.queued)[op as usize].pop_front();
        queued.unwrap_or_else(|| lock(&self.standing)[op as usize])
    }

    /// Runs one call of `op` as scripted; returns the call's number (from 0) and whether it
    /// succeeded.
    async fn perform(&self, op: Op) -> (usize, bool) {
        let i = op as usize;
        let call = self.calls[i].fetch_add(1, SeqCst);
        let me = thread::current();
        lock(&self.threads).push((op, me.id(), me.name().map(str::to_owned)));
        let now = self.running[i].fetch_add(1, SeqCst) + 1;
        self.peak_running[i].fetch_max(now, SeqCst);
        let mut running = Running {
            script: self,
            op: i,
            finished: false,
        };
        let ok = match self.next_behavior(op) {
            Behavior::Succeed => true,
            Behavior::Fail => false,
            Behavior::Slow(d) => {
                async_io::Timer::after(d).await;
                true
            }
            Behavior::Jitter(d) => {
                let nanos = fastrand::u64(0..d.as_nanos().max(1) as u64);
                async_io::Timer::after(Duration::from_nanos(nanos)).await;
                true
            }
            Behavior::Hang => futures_lite::future::pending().await,
            Behavior::Gated => {
                futures_lite::future::poll_fn(|cx| self.poll_gate(cx)).await;
                true
            }
            Behavior::Block(d) => {
                thread::sleep(d);
                true
            }
            Behavior::Panic => panic!("scripted panic in {op:?}"),
        };
        running.finished = true;
        (call, ok)
    }
}

/// Counts a call out of `running` when it finishes, panics or is dropped; one dropped before it
/// finished (not by a panic) counts as abandoned.
struct Running<'a> {
    script: &'a Script,
    op: usize,
    finished: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.script.running[self.op].fetch_sub(1, SeqCst);
        if !self.finished && !thread::panicking() {
            self.script.abandoned[self.op].fetch_add(1, SeqCst);
        }
    }
}

/// A connection: its serial number, and a session flag `reset` clears.
pub struct ScriptedConn {
    pub id: usize,
    /// Set by a test to stand for session state (a `SET`, an open transaction); `reset` clears it.
    pub dirty: bool,
    script: Arc<Script>,
}

impl fmt::Debug for ScriptedConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedConn")
            .field("id", &self.id)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Drop for ScriptedConn {
    fn drop(&mut self) {
        lock(&self.script.live).remove(&self.id);
    }
}

/// The factory; see the module docs.
#[derive(Debug)]
pub struct ScriptedFactory {
    script: Arc<Script>,
}

impl ScriptedFactory {
    /// A factory whose callbacks all succeed at once until told otherwise, and its script.
    pub fn new() -> (Self, Arc<Script>) {
        let script = Arc::new(Script::new());
        (
            ScriptedFactory {
                script: script.clone(),
            },
            script,
        )
    }
}

impl Default for ScriptedFactory {
    /// A factory whose script nobody looks at.
    fn default() -> Self {
        ScriptedFactory::new().0
    }
}

impl Drop for ScriptedFactory {
    fn drop(&mut self) {
        self.script.factory_dropped.store(true, SeqCst);
    }
}

impl ConnectionFactory for ScriptedFactory {
    type Connection = ScriptedConn;
    type Error = Refused;

    async fn create(&self) -> Result<ScriptedConn, Refused> {
        let s = &self.script;
        let (attempt, ok) = s.perform(Op::Create).await;
        if !ok {
            return Err(Refused(attempt + 1));
        }
        let id = s.created.fetch_add(1, SeqCst);
        let mut live = lock(&s.live);
        live.insert(id);
        s.peak.fetch_max(live.len(), SeqCst);
        Ok(ScriptedConn {
            id,
            dirty: false,
            script: s.clone(),
        })
    }

    async fn validate(&self, conn: &mut ScriptedConn) -> bool {
        self.script.perform(Op::Validate).await.1 && !self.script.is_dead(conn.id)
    }

    async fn destroy(&self, conn: ScriptedConn) {
        // Dropped at the end, or with the future if it is abandoned.
        let _conn = conn;
        self.script.perform(Op::Destroy).await;
    }
}

/// The health check half; from [`Script::health`].
#[derive(Debug)]
pub struct ScriptedHealth {
    script: Arc<Script>,
}

impl ConnectionHealthCheck<ScriptedConn> for ScriptedHealth {
    async fn is_healthy(&self, conn: &mut ScriptedConn) -> bool {
        self.script.perform(Op::IsHealthy).await.1 && !self.script.is_dead(conn.id)
    }

    async fn reset(&self, conn: &mut ScriptedConn) -> bool {
        if !self.script.perform(Op::Reset).await.1 || self.script.is_dead(conn.id) {
            return false;
        }
        conn.dirty = false;
        true
    }
}

/// Keeps the scripted panics (which the pool catches) out of the test output; other panics are
/// printed as usual.
pub fn quiet_scripted_panics() {
    super::quiet_panics_starting_with("scripted panic");
}
