//! The two traits a user implements: [`ConnectionFactory`] makes, checks and closes connections;
//! [`ConnectionHealthCheck`] probes and resets them.

use std::future::Future;
use std::pin::Pin;

/// Makes, validates and closes the connections a pool holds.
///
/// The methods are `async` so that async clients fit naturally; a blocking client (the `postgres`
/// crate, `rusqlite`) simply does its work inside the async body. The blocking facade drives these
/// futures on the calling thread, the async facade on the caller's executor.
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
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`ConnectionHealthCheck`], so a pool's type does not name its check.
pub(crate) trait DynHealthCheck<C>: Send + Sync {
    fn is_healthy<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool>;
    fn reset<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool>;
}

impl<C: Send, H: ConnectionHealthCheck<C>> DynHealthCheck<C> for H {
    fn is_healthy<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool> {
        Box::pin(ConnectionHealthCheck::is_healthy(self, conn))
    }

    fn reset<'a>(&'a self, conn: &'a mut C) -> BoxFuture<'a, bool> {
        Box::pin(ConnectionHealthCheck::reset(self, conn))
    }
}
