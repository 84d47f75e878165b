//! The two traits a user implements: [`ConnectionFactory`] makes, checks and closes connections;
//! [`ConnectionHealthCheck`] probes and resets them. And [`callback_deadline`], which tells a
//! callback that blocks its thread how long the pool will wait for it. The type-erased forms the
//! pool keeps a health check and an `on_connect` hook in live here too.

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Instant;

/// Makes, validates and closes the connections a pool holds.
///
/// The methods are `async` so that async clients fit naturally; a blocking client (the `postgres`
/// crate, `rusqlite`) simply does its work inside the async body. `validate` runs in the acquiring
/// caller: the blocking facade drives it on the calling thread, the async facade on the caller's
/// executor. `create` and `destroy` run on the pool's maintenance loop, never on a caller's
/// thread (a worker thread of the pool's own, or the executor a spawned
/// [`Maintenance`](crate::Maintenance) future runs on).
///
/// # Examples
///
/// ```
/// use std::net::TcpStream;
/// use nexus_pool::ConnectionFactory;
///
/// struct TcpFactory { addr: String }
///
/// impl ConnectionFactory for TcpFactory {
///     type Connection = TcpStream;
///     type Error = std::io::Error;
///
///     async fn create(&self) -> Result<TcpStream, std::io::Error> {
///         TcpStream::connect(&self.addr)
///     }
///
///     async fn validate(&self, conn: &mut TcpStream) -> bool {
///         conn.take_error().map(|e| e.is_none()).unwrap_or(false)
///     }
/// }
/// ```
pub trait ConnectionFactory: Send + Sync + 'static {
    /// The connection type the pool lends out.
    type Connection: Send + 'static;
    /// What `create` fails with; reaches callers inside [`PoolError`](crate::PoolError).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn create(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Closes a connection the pool no longer wants. The default just drops it.
    fn destroy(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send {
        drop(conn);
        async {}
    }

    /// A quick check run on checkout (see [`CheckoutValidation`](crate::CheckoutValidation));
    /// `false` means the connection is destroyed and the acquire goes on with another. The default
    /// accepts every connection.
    fn validate(&self, conn: &mut Self::Connection) -> impl Future<Output = bool> + Send {
        let _ = conn;
        async { true }
    }

    /// The health check that comes with this factory's connections (their `is_healthy` and
    /// `reset`). Every way of building a pool from the factory attaches it ([`ConnectionPool::new`],
    /// [`ConnectionPool::builder`]), unless the builder is told otherwise
    /// ([`health_check`](crate::ConnectionPoolBuilder::health_check) replaces it,
    /// [`without_health_check`](crate::ConnectionPoolBuilder::without_health_check) drops it).
    /// The shipped adapters supply theirs, so a connection left inside a transaction is never
    /// lent as it is. By default there is none.
    ///
    /// [`ConnectionPool::new`]: crate::ConnectionPool::new
    /// [`ConnectionPool::builder`]: crate::ConnectionPool::builder
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool};
    ///
    /// struct Buffers;
    /// struct Cleared;
    ///
    /// impl ConnectionHealthCheck<Vec<u8>> for Cleared {
    ///     async fn is_healthy(&self, _: &mut Vec<u8>) -> bool { true }
    ///     async fn reset(&self, buffer: &mut Vec<u8>) -> bool { buffer.clear(); true }
    /// }
    ///
    /// impl ConnectionFactory for Buffers {
    ///     type Connection = Vec<u8>;
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    ///     fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Vec<u8>>> {
    ///         Some(Cleared)
    ///     }
    /// }
    ///
    /// # #[cfg(feature = "blocking")] {
    /// let pool = ConnectionPool::new(Buffers, Default::default());
    /// pool.acquire_blocking()?.push(1);
    /// assert!(pool.acquire_blocking()?.is_empty(), "reset before it was lent again");
    /// # }
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        None::<NoHealthCheck>
    }
}

/// The health check of a factory that supplies none; never used.
struct NoHealthCheck;

impl<C> ConnectionHealthCheck<C> for NoHealthCheck {
    // Not an `async fn`: that would capture `&mut C`, which is `Send` only where `C` is.
    #[allow(clippy::manual_async_fn)]
    fn is_healthy(&self, _: &mut C) -> impl Future<Output = bool> + Send {
        async { true }
    }
}

/// Probes idle connections and returns used ones to a clean state.
///
/// A pool without a health check works: it is optional, see
/// [`ConnectionPoolBuilder::health_check`](crate::ConnectionPoolBuilder::health_check).
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionHealthCheck;
///
/// struct AlwaysFine;
///
/// impl ConnectionHealthCheck<Vec<u8>> for AlwaysFine {
///     async fn is_healthy(&self, _conn: &mut Vec<u8>) -> bool { true }
///     async fn reset(&self, conn: &mut Vec<u8>) -> bool { conn.clear(); true }
/// }
/// ```
pub trait ConnectionHealthCheck<C>: Send + Sync + 'static {
    /// A real round trip; `false` means the connection is destroyed and replaced.
    fn is_healthy(&self, conn: &mut C) -> impl Future<Output = bool> + Send;

    /// Returns a used connection to a clean session state before it is lent again; `false` means
    /// it could not be cleaned and is destroyed instead. The default does nothing.
    fn reset(&self, conn: &mut C) -> impl Future<Output = bool> + Send {
        let _ = conn;
        async { true }
    }

    /// Whether the last successful [`reset`](Self::reset) of `conn` cleared its session state
    /// (settings, prepared statements), so that what the pool's `on_connect` hook set up is gone
    /// and the hook must run again. The default says yes, as a reset that clears everything
    /// would; a check that resets only what the last user left behind says no when it found
    /// nothing to clear, and the hook's round trips are saved.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::ConnectionHealthCheck;
    ///
    /// struct ClearsOnlyWhatWasUsed;
    /// impl ConnectionHealthCheck<Vec<u8>> for ClearsOnlyWhatWasUsed {
    ///     async fn is_healthy(&self, _: &mut Vec<u8>) -> bool { true }
    ///     async fn reset(&self, _: &mut Vec<u8>) -> bool { true }
    ///     fn reset_cleared_session(&self, _: &Vec<u8>) -> bool { false }
    /// }
    /// assert!(!ClearsOnlyWhatWasUsed.reset_cleared_session(&Vec::new()));
    /// ```
    fn reset_cleared_session(&self, conn: &C) -> bool {
        let _ = conn;
        true
    }

    /// `conn` has just been prepared by the pool's `on_connect` hook (when it was made, and
    /// again after a reset that cleared its session): its session state now is its clean state.
    /// A check that watches the session, to reset only what a user left behind, takes it as the
    /// baseline, so the hook's own settings are not mistaken for a user's. The default does
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::ConnectionHealthCheck;
    ///
    /// struct Watches;
    /// impl ConnectionHealthCheck<(Vec<u8>, bool)> for Watches {
    ///     async fn is_healthy(&self, _: &mut (Vec<u8>, bool)) -> bool { true }
    ///     fn prepared(&self, conn: &mut (Vec<u8>, bool)) {
    ///         conn.1 = false; // nothing a user changed yet
    ///     }
    /// }
    /// let mut conn = (vec![1], true);
    /// Watches.prepared(&mut conn);
    /// assert!(!conn.1);
    /// ```
    fn prepared(&self, conn: &mut C) {
        let _ = conn;
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The `on_connect` hook: run on each new connection, and again after each reset.
pub(crate) type ConnectHook<F> = Box<
    dyn for<'c> Fn(
            &'c mut <F as ConnectionFactory>::Connection,
        ) -> BoxFuture<'c, Result<(), <F as ConnectionFactory>::Error>>
        + Send
        + Sync,
>;

/// The object-safe form of [`ConnectionHealthCheck`], so a pool's type does not name its check.
pub(crate) trait DynHealthCheck<C>: Send + Sync {
    fn is_healthy<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool>;
    fn reset<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool>;
    fn reset_cleared_session(&self, conn: &C) -> bool;
    fn prepared(&self, conn: &mut C);
}

impl<C: Send, H: ConnectionHealthCheck<C>> DynHealthCheck<C> for H {
    fn is_healthy<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool> {
        Box::pin(ConnectionHealthCheck::is_healthy(self, conn))
    }

    fn reset<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool> {
        Box::pin(ConnectionHealthCheck::reset(self, conn))
    }

    fn reset_cleared_session(&self, conn: &C) -> bool {
        ConnectionHealthCheck::reset_cleared_session(self, conn)
    }

    fn prepared(&self, conn: &mut C) {
        ConnectionHealthCheck::prepared(self, conn)
    }
}

thread_local! {
    /// The deadline of the callback the pool is polling on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// When the pool stops waiting for the callback it is running on this thread: `Some` while it
/// polls a [`ConnectionFactory`] or [`ConnectionHealthCheck`] method, `None` anywhere else.
///
/// The pool bounds every callback with a timer: `create_timeout`, `destroy_timeout`, and
/// `check_timeout` for `validate`, `is_healthy` and `reset` (cut shorter on checkout to what is
/// left of the caller's `acquire_timeout`). A timer stops a future only between two polls, and a
/// blocking client does all its I/O inside one poll, where no timer reaches it. Such a callback
/// reads this deadline and gives its blocking call the time left (a socket read timeout, the
/// driver's own timeout), so that the configured bounds hold for it too. Async callbacks need
/// none of this: the timer drops them at the deadline.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use std::time::{Duration, Instant};
/// use nexus_pool::{ConnectionHealthCheck, ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
///
/// struct Check;
/// impl ConnectionHealthCheck<()> for Check {
///     async fn is_healthy(&self, _: &mut ()) -> bool { true }
///     async fn reset(&self, _: &mut ()) -> bool {
///         // A blocking driver would pass `left` to its own timeout here.
///         let deadline = nexus_pool::callback_deadline().expect("set inside a callback");
///         let left = deadline.saturating_duration_since(Instant::now());
///         left <= Duration::from_secs(2)
///     }
/// }
///
/// let config = ConnectionPoolConfig::builder()
///     .max_connections(1)
///     .check_timeout(Duration::from_secs(2))
///     .build()?;
/// let pool = ConnectionPool::builder(Units).config(config).health_check(Check).build()?;
/// drop(pool.acquire_blocking()?);
/// let again = pool.acquire_blocking()?; // the same one: reset ran, and passed
/// assert_eq!(again.use_count(), 2);
/// assert_eq!(nexus_pool::callback_deadline(), None);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn callback_deadline() -> Option<Instant> {
    DEADLINE.get()
}

/// Runs `fut` with `deadline` visible to [`callback_deadline`] during each of its polls.
pub(crate) async fn with_deadline<F: Future>(deadline: Option<Instant>, fut: F) -> F::Output {
    /// Puts back the deadline of an enclosing callback (a callback may use another pool), also
    /// when the poll panics.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }

    let mut fut = pin!(fut);
    std::future::poll_fn(|cx: &mut Context<'_>| -> Poll<F::Output> {
        let _restore = Restore(DEADLINE.replace(deadline));
        fut.as_mut().poll(cx)
    })
    .await
}
