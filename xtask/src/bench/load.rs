//! A bounded, closed-loop HTTP/1.1 load generator for the hello-world server on
//! loopback: `connections` keep-alive connections, each on its own thread,
//! sending `GET /` back to back for a fixed time, every latency kept so the
//! percentiles are exact. No dependency: the server's response is small and
//! always carries a `content-length`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// What one load run measured.
#[derive(Clone, Copy, Debug)]
pub struct LoadResult {
    /// Responses received.
    pub requests: u64,
    /// Responses received per second.
    pub requests_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Loads `addr` with `connections` connections for `duration`.
pub fn run(addr: SocketAddr, connections: usize, duration: Duration) -> Result<LoadResult> {
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| std::thread::spawn(move || connection(addr, deadline)))
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        let mine = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        latencies.extend(mine);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if latencies.is_empty() {
        bail!("the server at {addr} answered no request");
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    Ok(LoadResult {
        requests: latencies.len() as u64,
        requests_per_s: latencies.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

/// One keep-alive connection until `deadline`: the latency of every response, ns.
fn connection(addr: SocketAddr, deadline: Instant) -> Result<Vec<u64>> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut latencies = Vec::new();
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream.write_all(REQUEST)?;
        loop {
            if let Some(length) = complete_response(&buffer)? {
                buffer.drain(..length);
                break;
            }
            let read = stream.read(&mut chunk).context("reading a response")?;
            if read == 0 {
                bail!("the server closed the connection mid-response");
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    Ok(latencies)
}

/// The length of the first complete response in `buffer`, if there is one.
fn complete_response(buffer: &[u8]) -> Result<Option<usize>> {
    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let body = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .context("a response without content-length")?;
    let total = head_end + 4 + body;
    Ok((buffer.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_once_its_body_has_arrived() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            complete_response(&response[..response.len() - 1]).unwrap(),
            None
        );
        assert_eq!(complete_response(response).unwrap(), Some(response.len()));
    }
}
