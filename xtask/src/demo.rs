//! `cargo xtask demo`: trace a small HTTP server while it answers five requests.
//!
//! Runs `tracer run -- demo_server --port 0 --requests 5`. The tracer prints live
//! events on stdout (passed straight through); the server, a child of the tracer,
//! prints `listening on 127.0.0.1:PORT` on stderr, which is read line by line,
//! forwarded, and parsed for the port. Five GET requests follow, then the server
//! exits, and with it `tracer run`. Every wait is bounded by [`DEADLINE`].

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    build_cmd::{DEMO_SERVER, FIXTURES_DIR},
    process::describe,
};

/// How long the demo may take from starting the tracer until it has exited.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How many requests the demo makes (and tells the server to expect).
pub const REQUESTS: u32 = 5;

/// Per-request bound on connecting, writing and reading.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the demo against the already built `target/release/tracer` and fixtures.
pub fn demo(root: &Path) -> Result<()> {
    let tracer = root.join("target/release/tracer");
    let server = root
        .join(FIXTURES_DIR)
        .join("target/release")
        .join(DEMO_SERVER);
    for binary in [&tracer, &server] {
        if !binary.exists() {
            bail!(
                "{} not found: `cargo xtask demo` should have built it",
                binary.display()
            );
        }
    }
    let deadline = Instant::now() + DEADLINE;
    let mut cmd = Command::new(&tracer);
    cmd.arg("run")
        .arg("--")
        .arg(&server)
        .args(["--port", "0", "--requests", &REQUESTS.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let line = describe(&cmd);
    eprintln!("+ {line}");
    let mut child = Tracer::spawn(cmd).with_context(|| format!("could not start `{line}`"))?;

    let port = child.wait_for_port(deadline)?;
    eprintln!("demo: server listens on port {port}; sending {REQUESTS} requests");
    for n in 1..=REQUESTS {
        let status =
            get(port).with_context(|| format!("request {n} of {REQUESTS} to port {port}"))?;
        eprintln!("demo: request {n}: {status}");
    }
    let status = child.wait_until(deadline).with_context(|| {
        format!("the server should exit after {REQUESTS} requests, and the tracer with it, within {DEADLINE:?}")
    })?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    eprintln!("demo: done, the tracer exited after the server answered {REQUESTS} requests");
    Ok(())
}

/// The running `tracer run` process. Dropping it before it exited on its own ends it
/// (SIGTERM, then SIGKILL), so an error never leaves it running.
struct Tracer {
    /// The tracer process.
    child: Child,
    /// Ports found on its stderr; closed when its stderr closes.
    ports: mpsc::Receiver<u16>,
    /// Whether it has been waited for.
    exited: bool,
}

impl Tracer {
    /// Starts `cmd` (stderr piped) and a thread that forwards its stderr to ours and
    /// sends every port it announces.
    fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().context("stderr was not piped")?;
        let (send, ports) = mpsc::channel();
        // Detached: the server may keep the pipe open after the tracer is gone.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if let Some(port) = parse_port(&line) {
                    let _ = send.send(port);
                }
            }
        });
        Ok(Self {
            child,
            ports,
            exited: false,
        })
    }

    /// Waits for the server's `listening on` line.
    fn wait_for_port(&mut self, deadline: Instant) -> Result<u16> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.ports.recv_timeout(timeout) {
            Ok(port) => Ok(port),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the server did not print `listening on 127.0.0.1:PORT` within {DEADLINE:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.wait_until(Instant::now() + Duration::from_secs(5));
                let status = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                bail!(
                    "the tracer closed its stderr before the server said where it listens ({status})"
                )
            }
        }
    }

    /// Waits for the tracer to exit; fails if it is still running at `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the tracer")? {
                self.exited = true;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the tracer is still running");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        eprintln!("demo: stopping the tracer (pid {})", self.child.id());
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SIGTERM first so the tracer can detach and end its target.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if self
                .wait_until(Instant::now() + Duration::from_secs(5))
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a `listening on 127.0.0.1:PORT` line, if `line` is one.
fn parse_port(line: &str) -> Option<u16> {
    let (_, addr) = line.split_once("listening on ")?;
    let addr = addr.split_whitespace().next()?;
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// One `GET /` to 127.0.0.1:`port`; returns the response's status line. Reads the
/// whole response (by Content-Length, else to end of stream) so the server is never
/// cut off mid-write.
fn get(port: u16) -> Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).context("connect")?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .context("send")?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).context("read status line")?;
    if status.is_empty() {
        bail!("the server closed the connection without answering");
    }
    let mut content_length = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).context("read headers")? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse::<u64>().ok();
        }
    }
    let mut body = Vec::new();
    match content_length {
        Some(len) => {
            reader
                .take(len)
                .read_to_end(&mut body)
                .context("read body")?;
        }
        None => {
            reader.read_to_end(&mut body).context("read body")?;
        }
    }
    Ok(status.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(parse_port("listening on 127.0.0.1:43127"), Some(43127));
        assert_eq!(
            parse_port("demo_server: listening on 127.0.0.1:80 (5 requests)"),
            Some(80)
        );
        assert_eq!(parse_port("init async_id=3"), None);
        assert_eq!(parse_port("listening on somewhere"), None);
    }

    #[test]
    fn get_reads_a_response_with_content_length() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap();
            // Keep the connection open: the client must stop at Content-Length.
            thread::sleep(Duration::from_millis(200));
        });
        assert_eq!(get(port).unwrap(), "HTTP/1.1 200 OK");
        server.join().unwrap();
    }
}
