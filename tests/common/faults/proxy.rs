//! A TCP proxy to the server with a switch that stops forwarding while keeping every socket
//! open: the pool's kernel still acknowledges what it sends, and nothing ever answers. That is a
//! hung server or middlebox, or a network that swallows packets, seen from the client.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::sync::lock;

/// One proxied connection: pool side and server side.
struct Link {
    /// While set, nothing is read from either socket (bytes wait in the kernel's buffers) and
    /// nothing is written: both peers see an open, silent socket.
    stalled: AtomicBool,
    /// Set once either side closed or failed: both pumps stop.
    closed: AtomicBool,
}

struct ProxyState {
    upstream: SocketAddr,
    stop: AtomicBool,
    /// New links start stalled (a total black hole: connects hang after the TCP handshake).
    black_hole: AtomicBool,
    links: Mutex<Vec<Arc<Link>>>,
}

/// The proxy: see the module docs. It stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            stop: AtomicBool::new(false),
            black_hole: AtomicBool::new(false),
            links: Mutex::default(),
        });
        let acceptor = {
            let state = state.clone();
            std::thread::spawn(move || accept_loop(&listener, &state))
        };
        Proxy {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// How many proxied connections are open.
    pub fn live_links(&self) -> usize {
        lock(&self.state.links)
            .iter()
            .filter(|l| !l.closed.load(Ordering::Acquire))
            .count()
    }

    /// Silences the links open now; new ones still forward.
    pub fn stall_existing(&self) {
        for link in lock(&self.state.links).iter() {
            link.stalled.store(true, Ordering::Release);
        }
    }

    /// Silences everything, new links included.
    pub fn black_hole(&self) {
        self.state.black_hole.store(true, Ordering::Release);
        self.stall_existing();
    }

    /// Forwards again, on every link.
    pub fn resume(&self) {
        self.state.black_hole.store(false, Ordering::Release);
        for link in lock(&self.state.links).iter() {
            link.stalled.store(false, Ordering::Release);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<ProxyState>) {
    while !state.stop.load(Ordering::Acquire) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        let Ok(server) = TcpStream::connect_timeout(&state.upstream, Duration::from_secs(2)) else {
            continue; // dropping `client` refuses the pool's connect
        };
        let _ = client.set_nonblocking(false);
        let link = Arc::new(Link {
            stalled: AtomicBool::new(state.black_hole.load(Ordering::Acquire)),
            closed: AtomicBool::new(false),
        });
        lock(&state.links).push(link.clone());
        for (from, to) in [
            (client.try_clone(), server.try_clone()),
            (server.try_clone(), client.try_clone()),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else {
                link.closed.store(true, Ordering::Release);
                break;
            };
            let (state, link) = (state.clone(), link.clone());
            std::thread::spawn(move || pump(from, to, &link, &state));
        }
    }
    for link in lock(&state.links).iter() {
        link.closed.store(true, Ordering::Release);
    }
}

/// Copies `from` to `to` until either closes, the link is closed or the proxy stops; while the
/// link is stalled it neither reads nor writes.
fn pump(mut from: TcpStream, mut to: TcpStream, link: &Link, state: &ProxyState) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = vec![0; 64 * 1024];
    // Bytes read just as the link stalled: they are written once it forwards again.
    let mut held: Vec<u8> = Vec::new();
    let alive = || !state.stop.load(Ordering::Acquire) && !link.closed.load(Ordering::Acquire);
    while alive() {
        if link.stalled.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        if !held.is_empty() {
            if to.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if link.stalled.load(Ordering::Acquire) => held.extend_from_slice(&buf[..n]),
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    link.closed.store(true, Ordering::Release);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
