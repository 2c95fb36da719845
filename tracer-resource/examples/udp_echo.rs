//! A UDP echo server and three clients on one Tokio runtime, where every client
//! connection is an async resource of its own, declared with `tracer-resource`
//! (as `utp-native` declares `UTPNative` resources in Node.js).
//!
//! - The server keeps one `UdpEcho` resource per client address, created when the
//!   first datagram arrives (trigger: the server task), and echoes each datagram
//!   in that resource's scope (`before`/`after` around it); `bye` destroys it.
//! - Each client opens its own `UdpEcho` (trigger: the client task), handles every
//!   reply in its scope, where a `UdpEcho.Reply` is created (its trigger: the
//!   connection in scope) and run once; spawns one Tokio task in the connection's
//!   scope (a task's trigger stays the task that spawned it, as Tokio's own hooks
//!   say); and waits on a `UdpEcho.Timer` whose trigger is the connection: an
//!   instrumented future, so each of its polls is a callback.
//!
//! Run it under tracer and watch the resources next to the Tokio tasks:
//!
//! ```console
//! $ cargo build --release -p tracer-resource --example udp_echo
//! $ sudo tracer run -- target/release/examples/udp_echo
//! ```
//!
//! `--ledger FILE` writes what the program itself did, as JSON lines, so tracer's
//! output can be checked against it (the project's tests do): `resource_init {id,
//! type, trigger}`, `resource_scope {id}` per callback, `resource_destroy {id}`.
//! The tests' `udp_echo` fixture runs this same code on a runtime with Tokio's
//! task hooks installed.

use std::{
    collections::HashMap,
    fs::File,
    future::Future,
    io::{BufWriter, Write},
    net::SocketAddr,
    pin::Pin,
    sync::{Mutex, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use tokio::net::UdpSocket;
use tracer_resource::AsyncResource;

const CLIENTS: usize = 3;
const MESSAGES: usize = 4;

/// Where `--ledger` records go, if it was given.
static LEDGER: OnceLock<Mutex<BufWriter<File>>> = OnceLock::new();

/// Appends one JSON record to the ledger, if there is one.
fn ledger(record: String) {
    if let Some(out) = LEDGER.get() {
        let mut out = out.lock().expect("ledger lock");
        writeln!(out, "{record}").expect("write ledger");
    }
}

/// Creates a resource and notes it in the ledger.
fn declare(type_name: &'static str, trigger: Option<u64>) -> AsyncResource {
    let resource = match trigger {
        Some(trigger) => AsyncResource::with_trigger(type_name, trigger),
        None => AsyncResource::new(type_name),
    };
    ledger(format!(
        r#"{{"event":"resource_init","id":{},"type":"{type_name}","trigger":{}}}"#,
        resource.async_id(),
        resource.trigger_async_id()
    ));
    resource
}

/// Runs `callback` in the resource's scope (a `before` and an `after`).
fn in_scope<R>(resource: &AsyncResource, callback: impl FnOnce() -> R) -> R {
    ledger(format!(
        r#"{{"event":"resource_scope","id":{}}}"#,
        resource.async_id()
    ));
    resource.in_scope(callback)
}

/// Drops the resource (its `destroy`).
fn destroy(resource: AsyncResource) {
    ledger(format!(
        r#"{{"event":"resource_destroy","id":{}}}"#,
        resource.async_id()
    ));
    drop(resource);
}

/// Notes each poll of the future inside it: an instrumented future's polls are its
/// resource's callbacks.
struct NotePolls<F> {
    id: u64,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for NotePolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        ledger(format!(r#"{{"event":"resource_scope","id":{}}}"#, self.id));
        self.inner.as_mut().poll(cx)
    }
}

async fn server(socket: UdpSocket) {
    let mut connections: HashMap<SocketAddr, AsyncResource> = HashMap::new();
    let mut finished = 0;
    let mut buf = [0u8; 64];
    while finished < CLIENTS {
        let (len, peer) = socket.recv_from(&mut buf).await.expect("server recv");
        let connection = connections
            .entry(peer)
            .or_insert_with(|| declare("UdpEcho", None));
        in_scope(connection, || socket.try_send_to(&buf[..len], peer)).expect("server echo");
        if &buf[..len] == b"bye" {
            finished += 1;
            destroy(connections.remove(&peer).expect("known peer"));
        }
    }
}

async fn client(server: SocketAddr, number: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client bind");
    socket.connect(server).await.expect("client connect");
    let connection = declare("UdpEcho", None);
    let mut buf = [0u8; 64];
    for message in 0..MESSAGES {
        let text = format!("client {number} message {message}");
        socket.send(text.as_bytes()).await.expect("client send");
        let len = socket.recv(&mut buf).await.expect("client recv");
        in_scope(&connection, || {
            assert_eq!(&buf[..len], text.as_bytes());
            let reply = declare("UdpEcho.Reply", None);
            in_scope(&reply, || std::hint::black_box(len));
            destroy(reply);
        });
    }
    let spawned = in_scope(&connection, || tokio::spawn(async { 1 }));
    spawned.await.expect("spawned in scope");
    let timer = declare("UdpEcho.Timer", Some(connection.async_id()));
    let id = timer.async_id();
    let pause = Box::pin(tokio::time::sleep(Duration::from_millis(5)));
    timer.instrument(NotePolls { id, inner: pause }).await;
    ledger(format!(r#"{{"event":"resource_destroy","id":{id}}}"#));

    socket.send(b"bye").await.expect("client bye");
    let _ = socket.recv(&mut buf).await.expect("client bye echo");
    destroy(connection);
}

/// Writes the ledger to `path` from now on.
pub fn open_ledger(path: &str) {
    let file = File::create(path).unwrap_or_else(|e| panic!("cannot create {path}: {e}"));
    let _ = LEDGER.set(Mutex::new(BufWriter::new(file)));
}

/// The ledger file named by `--ledger FILE`, the only argument there is.
pub fn ledger_argument() -> Option<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--ledger"), Some(path)) => Some(path),
        _ => {
            eprintln!("usage: udp_echo [--ledger FILE]");
            std::process::exit(2);
        }
    }
}

/// The server and its clients on `runtime`, until every client said bye; then
/// the ledger is flushed.
pub fn run(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("server bind");
        let address = socket.local_addr().expect("server address");
        let server = tokio::spawn(server(socket));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|number| tokio::spawn(client(address, number)))
            .collect();
        for client in clients {
            client.await.expect("client");
        }
        server.await.expect("server");
    });
    if let Some(out) = LEDGER.get() {
        out.lock()
            .expect("ledger lock")
            .flush()
            .expect("flush ledger");
    }
    eprintln!("udp_echo: {CLIENTS} clients sent {MESSAGES} messages each, all echoed");
}

fn main() {
    if let Some(path) = ledger_argument() {
        open_ledger(&path);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build runtime");
    run(&runtime);
}
