//! What the two PostgreSQL adapters share: how a session is reset, and which errors mean the
//! session is gone.

use std::error::Error as _;

#[cfg(all(feature = "postgres", not(feature = "tokio-postgres")))]
use ::postgres::{
    Error,
    error::{Severity, SqlState},
};
#[cfg(feature = "tokio-postgres")]
use ::tokio_postgres::{
    Error,
    error::{Severity, SqlState},
};

/// How a PostgreSQL health check returns a used session to a clean state before it is lent
/// again. Every mode first ends a transaction the previous user left open (or aborted): such a
/// connection is rolled back, or destroyed if that fails, never lent dirty. A `ROLLBACK` is only
/// sent into a transaction block, so the server never logs `WARNING: there is no transaction in
/// progress`. The `tokio-postgres` adapter skips the reset when the last user left nothing
/// behind; the blocking adapter cannot tell and resets every reuse.
///
/// The default is [`Clean`](PostgresReset::Clean): everything `DISCARD ALL` does except
/// deallocating prepared statements. Plain `DISCARD ALL` ([`DiscardAll`](PostgresReset::DiscardAll))
/// also deallocates the statements the client prepared for itself, and the client does not
/// know: after a reuse, the first query that needs a user-defined type the client has not seen
/// yet (an enum, a composite) fails with `prepared statement "s1" does not exist`.
///
/// With the `serde` feature it deserializes from its name in snake_case (`"clean"`,
/// `"discard_all"`, `"rollback"`, `"transaction_pooler"`), as the `reset_mode` of
/// `adapters::settings::PostgresSettings` and `TokioPostgresSettings` is written in a
/// configuration file; any other name is refused with serde's error listing these four.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "tokio-postgres")]
/// use nexus_pool::adapters::tokio_postgres::{PostgresReset, TokioPostgresHealthCheck};
/// # #[cfg(all(feature = "postgres", not(feature = "tokio-postgres")))]
/// # use nexus_pool::adapters::postgres::{PostgresReset, PostgresHealthCheck as TokioPostgresHealthCheck};
///
/// assert_eq!(PostgresReset::default(), PostgresReset::Clean);
/// let check = TokioPostgresHealthCheck::new().reset_mode(PostgresReset::DiscardAll);
/// # drop(check);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum PostgresReset {
    /// `DISCARD ALL` minus `DEALLOCATE ALL`, in one round trip: `CLOSE ALL; SET SESSION
    /// AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD
    /// PLANS; DISCARD TEMP; DISCARD SEQUENCES`, after a `ROLLBACK` when a block is open. Session settings, temporary tables, cursors,
    /// `LISTEN`s, advisory locks and cached plans are dropped; prepared statements survive, so
    /// a `Statement` prepared in an earlier checkout keeps working.
    #[default]
    Clean,
    /// `DISCARD ALL` (after a `ROLLBACK` when a transaction was left open): the most thorough,
    /// one round trip in the common case. It also deallocates prepared statements, including
    /// those the client keeps for looking up user-defined types (see above): use it only when
    /// your queries use built-in types alone, and never keep a `Statement` across checkouts.
    DiscardAll,
    /// Only `ROLLBACK`: ends a transaction left open and leaves every other session setting as
    /// the last user left it. The cheapest; for applications that never change session state.
    Rollback,
    /// For a transaction pooler in front of the server (PgBouncer with `pool_mode =
    /// transaction`): only ends a transaction block the last user left open or failed
    /// (`ROLLBACK`, sent only into a block, as in every mode), and never sends `DISCARD ALL`,
    /// `RESET ALL` or any other session-level statement. Behind such a pooler a session is one
    /// transaction long: the next one may run on another server connection, so resetting
    /// "the session" would clean some other client's server connection and change nothing for
    /// this one. The `tokio-postgres` adapter also stops treating session-level commands as
    /// something to reset (they have no lasting meaning here), so a reuse costs nothing unless
    /// a block was left open.
    ///
    /// What the pooler takes away is yours to avoid: session state (`SET` without `LOCAL`,
    /// `LISTEN`, temporary tables, session-level advisory locks, `WITH HOLD` cursors) and
    /// **named prepared statements**, which PgBouncer before 1.21 does not track in transaction
    /// mode: a statement prepared on one server connection is not there when the next
    /// transaction runs on another (`prepared statement "s0" does not exist`). The drivers'
    /// `query`, `execute` and `prepare` use named statements; `simple_query`, `batch_execute`
    /// and `query_typed` (the unnamed statement, parsed, bound and run in one round trip) do
    /// not. (Inside a transaction block the server connection stays the same, but a statement
    /// prepared there outlives the block on that server connection, where another client may
    /// meet its name: use the unnamed statement there too.) A query whose parameters or columns
    /// have a user-defined type makes the client look the type up with a named statement of its
    /// own: behind a transaction pooler, stick to built-in types or cast (`$1::text::my_enum`).
    /// The adapters themselves send only simple queries (pings, the reset). The README's
    /// "Behind PgBouncer" section says which mode to use where.
    TransactionPooler,
}

/// `DISCARD ALL` minus `DEALLOCATE ALL` (the PostgreSQL docs of `DISCARD` list what it is made
/// of). Sent as one simple query, it runs in one implicit transaction, where all of it is allowed.
pub(crate) const CLEAN_SQL: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

/// [`CLEAN_SQL`] after a `ROLLBACK`, for a session known to be in a transaction block: there the
/// `ROLLBACK` ends the block without a warning (outside one it would write `WARNING: there is no
/// transaction in progress` to the server log, which is why it is never sent blindly).
pub(crate) const ROLLBACK_CLEAN_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION \
     DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; \
     DISCARD TEMP; DISCARD SEQUENCES";

/// Asks, in the same simple query as the reset, whether a transaction block was open: inside
/// one, `transaction_timestamp()` is when the block began, earlier than this statement; outside,
/// the implicit transaction of this query began with it. In a failed block it errors
/// (`25P02`), which says the same. No warning either way.
pub(crate) const PROBE_SQL: &str = "SELECT transaction_timestamp() = statement_timestamp()";

/// What a reset of a session in an unknown state sends first ([`PostgresReset::Clean`] and
/// [`PostgresReset::Rollback`]): the probe, then (for `Clean`) the cleaning, which the `ROLLBACK`
/// due when the probe finds a block undoes and [`reset_sql`] then repeats.
pub(crate) fn probe_sql(mode: PostgresReset) -> String {
    match mode {
        PostgresReset::Rollback | PostgresReset::TransactionPooler => PROBE_SQL.to_owned(),
        _ => format!("{PROBE_SQL}; {CLEAN_SQL}"),
    }
}

/// What cleans a session whose state is known: `in_block` when a transaction block is open (or
/// failed), `changed` when session state may have changed; empty when nothing is due. Each
/// string is one simple query; `DiscardAll` in a block needs two (`ROLLBACK`, then `DISCARD
/// ALL`, which refuses to run in any transaction block, implicit ones included).
pub(crate) fn reset_sql(
    mode: PostgresReset,
    in_block: bool,
    changed: bool,
) -> &'static [&'static str] {
    match (mode, in_block, changed) {
        (_, false, false)
        | (PostgresReset::Rollback | PostgresReset::TransactionPooler, false, true) => &[],
        (PostgresReset::Rollback | PostgresReset::TransactionPooler, true, _) => &["ROLLBACK"],
        (PostgresReset::DiscardAll, true, _) => &["ROLLBACK", "DISCARD ALL"],
        (PostgresReset::DiscardAll, false, true) => &["DISCARD ALL"],
        (PostgresReset::Clean, true, _) => &[ROLLBACK_CLEAN_SQL],
        (PostgresReset::Clean, false, true) => &[CLEAN_SQL],
    }
}

/// Whether the first value of the probe's answer says a transaction block was open.
pub(crate) fn probe_found_block(first_value: Option<&str>) -> bool {
    first_value != Some("t")
}

impl PostgresReset {
    /// Whether `err`, from a `DISCARD ALL` sent to a session in an unknown state, says a
    /// transaction block is open, so that a `ROLLBACK` and a second try are due.
    pub(crate) fn needs_rollback(self, err: &Error) -> bool {
        self == PostgresReset::DiscardAll
            && matches!(
                err.code(),
                Some(c) if *c == SqlState::ACTIVE_SQL_TRANSACTION
                    || *c == SqlState::IN_FAILED_SQL_TRANSACTION
            )
    }
}

/// Whether `err`, from [`probe_sql`], says the previous user left a failed transaction block.
pub(crate) fn in_failed_block(err: &Error) -> bool {
    err.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION)
}

/// Whether `err` means the session is gone (the server closed it, terminated the backend, or the
/// network failed), so the connection must not go back to the pool: call
/// [`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken) when it returns `true`.
///
/// A best effort: it is `true` for a closed connection, an I/O error, a `FATAL` or `PANIC` error
/// from the server, SQLSTATE class `08` (connection exception) and `57P01`–`57P03` (the server
/// shutting down), a timeout, and a protocol error; `false` for ordinary SQL errors (a constraint
/// violation, a syntax error) that leave the session usable. When in doubt, marking a connection
/// broken only costs one reconnect.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(all(feature = "postgres", feature = "blocking"))] {
/// use nexus_pool::adapters::postgres::{PostgresConnectionFactory, connection_lost};
///
/// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
/// let pool = factory.pool_builder().build()?;
/// let mut conn = pool.acquire_blocking()?;
/// if let Err(e) = conn.simple_query("SELECT 1") {
///     if connection_lost(&e) {
///         conn.mark_broken(); // destroyed on drop instead of going back to the pool
///     }
///     return Err(e.into());
/// }
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn connection_lost(err: &Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        return matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ) || code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    if err.source().is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    // The remaining kinds have no public accessor; these three leave the wire in an unknown
    // state (a reply may still be in flight, or the stream is out of step).
    let text = err.to_string();
    text == "timeout waiting for server"
        || text == "unexpected message from server"
        || text == "error parsing response from server"
}
