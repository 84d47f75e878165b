//! What the PostgreSQL adapters learn about a session by watching its socket, so that a
//! reused connection is reset only when its last user left something behind.
//!
//! # The algorithm
//!
//! The adapter opens the socket itself and hands the driver a [`TrackedStream`] around it
//! (`tokio-postgres`'s `connect_raw`; the blocking client takes it as its "TLS" stream, see
//! `adapters::postgres`).
//! The stream forwards every byte unchanged and reads the message framing on the way (a type
//! byte, a length, a body) in both directions:
//!
//! * from the server, `ReadyForQuery` carries the transaction status (`I` idle, `T` in a block,
//!   `E` in a failed block); `CommandComplete` carries the command tag (`SELECT 1`, `SET`,
//!   `LISTEN`, ...); `ParameterStatus` after start-up reports a changed setting;
//! * to the server, every `Query`, `Sync` and `FunctionCall` is answered by exactly one
//!   `ReadyForQuery`, so pairing them in order says whether an answer that may change the
//!   transaction status is still due; the SQL text of a `Query` or `Parse` is scanned for the
//!   few ways a plain `SELECT` can change the session;
//! * the connection task is polled through [`Watched`], which says whether a request the client
//!   queued may still be unwritten (the task was woken and has not run yet, or is running).
//!
//! # Invariants
//!
//! * The stream never alters, delays or buffers a byte: a parse of a message it does not
//!   understand only makes the session look dirty, which costs one reset.
//! * The status and the `changed` flag are written before `risky` comes down, and `risky` goes
//!   up before the connection task's poll ends (all `SeqCst`), so a reset that sees the task
//!   idle and nothing risky in flight also sees what the last answers said.
//! * `changed` is sticky until the adapter clears it after a successful reset.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::TcpStream;
#[cfg(unix)]
use ::tokio::net::UnixStream;

/// The transaction status `ReadyForQuery` reports when no transaction block is open.
const IDLE: u8 = b'I';

/// The longest SQL text scanned for session-changing calls; a longer one counts as changing
/// the session (cheaper than scanning it, and such texts are rare in request handlers).
const MAX_SCANNED: usize = 16 * 1024;

/// Command tags that leave no session state behind once the transaction status is idle again:
/// data reads and writes and transaction control. Every other tag (`SET`, `RESET`, `LISTEN`,
/// `DECLARE CURSOR`, `PREPARE`, `CREATE TABLE`, `CALL`, `DO`, ...) marks the session changed.
const HARMLESS_TAGS: [&[u8]; 18] = [
    b"SELECT",
    b"INSERT",
    b"UPDATE",
    b"DELETE",
    b"MERGE",
    b"FETCH",
    b"MOVE",
    b"COPY",
    b"SHOW",
    b"EXPLAIN",
    b"BEGIN",
    b"START TRANSACTION",
    b"COMMIT",
    b"ROLLBACK",
    b"SAVEPOINT",
    b"RELEASE",
    b"NOTIFY",
    b"LOCK TABLE",
];

/// Words in SQL text that change the session behind a harmless tag: `set_config(.., false)`,
/// session-level advisory locks (`pg_advisory_lock`, `pg_try_advisory_lock`; the `_xact_`
/// forms end with the transaction), and `CREATE TEMP TABLE .. AS` / `SELECT .. INTO TEMP`
/// (tagged `SELECT n`). A false match (a column named `temperature`) costs one reset.
const SESSION_WORDS: [&[u8]; 3] = [b"set_config", b"advisory_lock", b"temp"];

/// What [`SessionState::peek`] saw on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    Nothing,
    Unread,
    End,
}

/// What one session's traffic said, shared between its socket, its connection task and its
/// health check.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// The connection task was woken and has not run since: a request the client queued may not
    /// be written yet (a future dropped right after it queued one, or a dropped `Transaction`'s
    /// `ROLLBACK`), so the counters below do not know of it.
    woken: AtomicBool,
    /// The connection task is running: it may be writing such a request right now.
    busy: AtomicBool,
    /// The connection future has returned: the session is over (set before `busy` goes false,
    /// so a reset that waited for the task sees it).
    ended: AtomicBool,
    /// The connection task's own waker, woken after `woken` is set.
    task: Mutex<Option<Waker>>,
    /// A reset waiting in [`task_idle`](Self::task_idle), woken at the end of each poll.
    idle_waiter: Mutex<Option<Waker>>,
    /// A second handle on the session's socket (the same socket, a duplicated descriptor), to
    /// look without reading whether the server closed it or sent something unasked.
    socket: OnceLock<socket2::Socket>,
    /// The status byte of the last `ReadyForQuery`.
    status: AtomicU8,
    /// A command that leaves session state behind has run since the last reset.
    changed: AtomicBool,
    /// Requests written and not answered yet that may change the transaction status: a
    /// `Query`, a `FunctionCall`, or a `Sync` after an `Execute`. (A `Sync` after only `Parse`,
    /// `Describe` or `Close`, such as a dropped `Statement` sends, changes nothing.)
    risky: AtomicU64,
    /// How many `DISCARD ALL` and `DEALLOCATE ALL` the server completed: each drops every
    /// prepared statement, so the statement cache compares it with the count it was filled at.
    deallocations: AtomicU64,
}

impl SessionState {
    pub(crate) fn new() -> Self {
        SessionState {
            woken: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            task: Mutex::new(None),
            idle_waiter: Mutex::new(None),
            socket: OnceLock::new(),
            status: AtomicU8::new(IDLE),
            changed: AtomicBool::new(false),
            risky: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
        }
    }

    /// How many times the server deallocated every prepared statement of the session.
    pub(crate) fn deallocations(&self) -> u64 {
        self.deallocations.load(Ordering::SeqCst)
    }

    #[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
    /// Waits until the connection task is idle (not woken, not running), without a round trip:
    /// then every request the client queued before this call has been written. A cross-thread
    /// wake at most; bounded, like the whole reset, by the pool's deadline for the call.
    pub(crate) async fn task_idle(&self) {
        std::future::poll_fn(|cx| {
            if self.idle_now() {
                return Poll::Ready(());
            }
            *self
                .idle_waiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            // Registered, then checked again: an end of poll in between has woken us or is seen.
            if self.idle_now() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    fn idle_now(&self) -> bool {
        // In this order: a request queued before this call either left the task woken, or is
        // being written (busy), or was written and counted before `busy` went false.
        !self.woken.load(Ordering::SeqCst) && !self.busy.load(Ordering::SeqCst)
    }

    /// Every request the client queued that may change the transaction status has been
    /// written and answered. Call after [`task_idle`](Self::task_idle).
    pub(crate) fn settled(&self) -> bool {
        self.idle_now() && self.risky.load(Ordering::SeqCst) == 0
    }

    /// Keeps a duplicate of the session's socket for [`peek`](Self::peek).
    pub(crate) fn watch_socket(&self, socket: &Socket) {
        let sock = match socket {
            Socket::Tcp(s) => socket2::SockRef::from(s).try_clone(),
            #[cfg(unix)]
            Socket::Unix(s) => socket2::SockRef::from(s).try_clone(),
        };
        if let Ok(sock) = sock {
            let _ = self.socket.set(sock);
        }
    }

    /// What the socket holds, looked at without reading it: one non-blocking `recv(MSG_PEEK)`
    /// on the duplicated descriptor (it shares tokio's non-blocking mode), no round trip.
    /// `Some(Peek::Nothing)` when nothing waits unread; `Some(Peek::End)` at the end of the stream
    /// (the server closed the session: a backend terminated while the session sat idle);
    /// `Some(Peek::Unread)` when bytes wait for the connection task (the answer to a dropped
    /// `Statement`'s `Close`, or a terminated backend's `FATAL`); `None` when it cannot tell.
    pub(crate) fn peek(&self) -> Option<Peek> {
        let sock = self.socket.get()?;
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match sock.peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Peek::Nothing),
            Ok(0) => Some(Peek::End),
            Ok(_) => Some(Peek::Unread),
            Err(_) => None,
        }
    }

    /// Whether the connection future has returned.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Whether the last answer left a transaction block open (or failed).
    pub(crate) fn in_transaction(&self) -> bool {
        self.status.load(Ordering::Acquire) != IDLE
    }

    /// Whether session state was changed since the last [`clear_changed`](Self::clear_changed).
    pub(crate) fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }

    /// After a reset: the reset's own commands (`RESET ALL`, ...) count as changes, so this is
    /// called once they are all answered.
    pub(crate) fn clear_changed(&self) {
        self.changed.store(false, Ordering::Release);
    }

    /// Nothing to reset: every answer is in, no transaction is open and nothing changed.
    pub(crate) fn clean(&self) -> bool {
        self.settled() && !self.ended() && !self.in_transaction() && !self.changed()
    }

    fn on_server_message(&self, kind: u8, body: &[u8], started: bool, answered: Option<bool>) {
        match kind {
            b'Z' => {
                self.status
                    .store(body.first().copied().unwrap_or(0), Ordering::SeqCst);
                if answered == Some(true) {
                    self.risky.fetch_sub(1, Ordering::SeqCst);
                }
            }
            b'C' if changes_session(body) => {
                if deallocates_all(body) {
                    self.deallocations.fetch_add(1, Ordering::SeqCst);
                }
                self.changed.store(true, Ordering::SeqCst);
            }
            // Before the first `ReadyForQuery` these are the start-up's report of every setting.
            b'S' if started => self.changed.store(true, Ordering::SeqCst),
            _ => {}
        }
    }

    /// Returns whether the message ends a request answered by one `ReadyForQuery`, and then
    /// whether that request may change the transaction status.
    fn on_client_message(
        &self,
        kind: u8,
        body: &[u8],
        whole: bool,
        executed: &mut bool,
    ) -> Option<bool> {
        if matches!(kind, b'Q' | b'P') && (!whole || mentions_session_words(body)) {
            self.changed.store(true, Ordering::SeqCst);
        }
        let risky = match kind {
            b'Q' | b'F' => true,
            b'E' => {
                *executed = true;
                return None;
            }
            b'S' => std::mem::take(executed),
            _ => return None,
        };
        if risky {
            self.risky.fetch_add(1, Ordering::SeqCst);
        }
        Some(risky)
    }
}

impl Wake for SessionState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        // Cloned out of the lock: waking runs the executor's code.
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// Runs a session's connection future and keeps [`SessionState`]'s `woken` and `busy` true: it
/// polls the future with a waker that marks the state woken before it wakes the real task.
/// (The blocking client polls its connection only inside its own calls: nothing is in flight
/// between them, so it needs none of this.)
#[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
pub(crate) struct Watched<F> {
    future: Pin<Box<F>>,
    state: Arc<SessionState>,
    waker: Waker,
}

#[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
impl<F> Watched<F> {
    pub(crate) fn new(future: F, state: Arc<SessionState>) -> Self {
        Watched {
            future: Box::pin(future),
            waker: Waker::from(Arc::clone(&state)),
            state,
        }
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut task = this
                .state
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Busy before the wake is consumed, so a reset never sees neither.
        this.state.busy.store(true, Ordering::SeqCst);
        this.state.woken.store(false, Ordering::SeqCst);
        let poll = this
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        if poll.is_ready() {
            this.state.ended.store(true, Ordering::SeqCst);
        }
        this.state.busy.store(false, Ordering::SeqCst);
        // Taken out of the lock: waking runs the executor's code.
        let waiter = this
            .state
            .idle_waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        poll
    }
}

fn changes_session(tag: &[u8]) -> bool {
    let tag = tag.split(|&b| b == 0).next().unwrap_or_default();
    !HARMLESS_TAGS
        .iter()
        .any(|known| tag.starts_with(known) && matches!(tag.get(known.len()), None | Some(b' ')))
}

/// Whether a command tag says every prepared statement of the session is gone.
fn deallocates_all(tag: &[u8]) -> bool {
    let tag = tag.split(|&b| b == 0).next().unwrap_or_default();
    tag == b"DISCARD ALL" || tag == b"DEALLOCATE ALL"
}

fn mentions_session_words(sql: &[u8]) -> bool {
    SESSION_WORDS.iter().any(|word| {
        sql.windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word))
    })
}

/// Follows the framing of one direction of the protocol across reads or writes of any size.
#[derive(Debug)]
struct Framer {
    /// Whether messages carry a type byte; only the client's start-up message has none.
    typed: bool,
    /// The header read so far: type byte (when typed) and big-endian length.
    head: [u8; 5],
    head_len: usize,
    /// Body bytes still to come of the current message, once its header is complete.
    left: usize,
    in_body: bool,
    kind: u8,
    /// The body kept so far (at most `keep` bytes).
    body: Vec<u8>,
    /// How much of a body this direction needs to keep.
    keep: usize,
    /// The current body was longer than `keep`.
    cut: bool,
}

impl Framer {
    fn new(typed: bool, keep: usize) -> Self {
        Framer {
            typed,
            head: [0; 5],
            head_len: 0,
            left: 0,
            in_body: false,
            kind: 0,
            body: Vec::new(),
            keep,
            cut: false,
        }
    }

    /// Feeds bytes in stream order; calls `on` with (type, kept body, whole body kept) for
    /// each message completed.
    fn feed(&mut self, mut data: &[u8], on: &mut impl FnMut(u8, &[u8], bool)) {
        while !data.is_empty() {
            if !self.in_body {
                let size = if self.typed { 5 } else { 4 };
                let take = (size - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if self.head_len < size {
                    return;
                }
                let (kind, len) = if self.typed {
                    (self.head[0], &self.head[1..5])
                } else {
                    (0, &self.head[0..4])
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                self.kind = kind;
                self.left = len.saturating_sub(4);
                self.body.clear();
                self.cut = false;
                self.in_body = true;
            }
            if self.left == 0 {
                // A message with an empty body is complete with its header.
                self.finish(on);
                continue;
            }
            let take = self.left.min(data.len());
            let room = self.keep.saturating_sub(self.body.len()).min(take);
            self.body.extend_from_slice(&data[..room]);
            self.cut |= room < take;
            self.left -= take;
            data = &data[take..];
            if self.left == 0 {
                self.finish(on);
            }
        }
    }

    fn finish(&mut self, on: &mut impl FnMut(u8, &[u8], bool)) {
        on(self.kind, &self.body, !self.cut);
        self.in_body = false;
        self.head_len = 0;
        self.typed = true;
    }
}

/// The socket under a tracked session.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    #[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
    Unix(UnixStream),
}

/// The socket options of a connection string, as the drivers apply them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketOptions {
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) tcp_user_timeout: Option<Duration>,
    /// Keepalive idle time, interval and retries, when keepalives are on.
    pub(crate) keepalive: Option<(Duration, Option<Duration>, Option<u32>)>,
}

/// Connects a TCP socket to `addr` within the connect timeout, with Nagle off and the options'
/// user timeout and keepalives, as the drivers set up their own sockets.
pub(crate) async fn open_tcp(addr: SocketAddr, options: &SocketOptions) -> io::Result<Socket> {
    let connect = TcpStream::connect(addr);
    let stream = match options.connect_timeout {
        None => connect.await?,
        Some(limit) => ::tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            })?,
    };
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(&stream);
    #[cfg(target_os = "linux")]
    if let Some(user_timeout) = options.tcp_user_timeout {
        sock.set_tcp_user_timeout(Some(user_timeout))?;
    }
    if let Some((idle, _interval, _retries)) = options.keepalive {
        #[allow(unused_mut)]
        let mut keepalive = socket2::TcpKeepalive::new().with_time(idle);
        #[cfg(not(any(target_os = "openbsd", target_os = "redox", target_os = "solaris")))]
        if let Some(interval) = _interval {
            keepalive = keepalive.with_interval(interval);
        }
        #[cfg(not(any(
            target_os = "openbsd",
            target_os = "redox",
            target_os = "solaris",
            target_os = "windows"
        )))]
        if let Some(retries) = _retries {
            keepalive = keepalive.with_retries(retries);
        }
        sock.set_tcp_keepalive(&keepalive)?;
    }
    Ok(Socket::Tcp(stream))
}

/// A socket that reports what passes through it to a [`SessionState`]; see the module docs.
#[derive(Debug)]
pub(crate) struct TrackedStream {
    socket: Socket,
    state: Arc<SessionState>,
    reads: Framer,
    writes: Framer,
    /// A `ReadyForQuery` has been read: start-up is over.
    started: bool,
    /// For each request written and not answered yet, in order: whether it is counted in
    /// [`SessionState`]'s `risky`.
    pending: VecDeque<bool>,
    /// An `Execute` was written since the last `Sync`.
    executed: bool,
}

impl TrackedStream {
    pub(crate) fn new(socket: Socket, state: Arc<SessionState>) -> Self {
        state.watch_socket(&socket);
        TrackedStream {
            socket,
            state,
            // The server's messages we read need a status byte or a tag: 64 bytes hold any tag.
            reads: Framer::new(true, 64),
            writes: Framer::new(false, MAX_SCANNED),
            started: false,
            pending: VecDeque::new(),
            executed: false,
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = poll {
            let (state, started, pending) = (&this.state, &mut this.started, &mut this.pending);
            this.reads
                .feed(&buf.filled()[before..], &mut |kind, body, _| {
                    // The start-up's `ReadyForQuery` answers no request: `pending` is empty.
                    let answered = if kind == b'Z' {
                        pending.pop_front()
                    } else {
                        None
                    };
                    state.on_server_message(kind, body, *started, answered);
                    *started |= kind == b'Z';
                });
        }
        poll
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = poll {
            let (state, pending, executed) = (&this.state, &mut this.pending, &mut this.executed);
            this.writes.feed(&buf[..n], &mut |kind, body, whole| {
                if let Some(risky) = state.on_client_message(kind, body, whole, executed) {
                    pending.push_back(risky);
                }
            });
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn framing_survives_any_split() {
        let mut wire = Vec::new();
        wire.extend(message(b'C', b"SELECT 1\0"));
        wire.extend(message(b'Z', b"T"));
        wire.extend(message(b'C', b"SET\0"));
        wire.extend(message(b'Z', b"I"));
        for split in 1..wire.len() {
            let state = SessionState::new();
            let mut framer = Framer::new(true, 64);
            for chunk in wire.chunks(split) {
                framer.feed(chunk, &mut |k, b, _| {
                    state.on_server_message(k, b, true, None)
                });
            }
            assert!(!state.in_transaction());
            assert!(state.changed());
        }
    }

    #[test]
    fn tags() {
        assert!(!changes_session(b"SELECT 1\0"));
        assert!(!changes_session(b"INSERT 0 1\0"));
        assert!(!changes_session(b"ROLLBACK\0"));
        assert!(changes_session(b"SET\0"));
        assert!(changes_session(b"SELECTX\0"));
        assert!(changes_session(b"LISTEN\0"));
        assert!(changes_session(b"CREATE TABLE\0"));
        assert!(deallocates_all(b"DISCARD ALL\0"));
        assert!(deallocates_all(b"DEALLOCATE ALL\0"));
        assert!(!deallocates_all(b"DEALLOCATE\0"));
        assert!(!deallocates_all(b"DISCARD PLANS\0"));
    }

    #[test]
    fn words() {
        assert!(mentions_session_words(
            b"SELECT SET_CONFIG('a', 'b', false)"
        ));
        assert!(mentions_session_words(b"select pg_advisory_lock(1)"));
        assert!(!mentions_session_words(b"select pg_advisory_xact_lock(1)"));
        assert!(mentions_session_words(b"CREATE TEMP TABLE t AS SELECT 1"));
        assert!(!mentions_session_words(b"SELECT 1"));
    }
}
