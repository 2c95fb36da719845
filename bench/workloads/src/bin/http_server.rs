//! Hello-world HTTP/1.1 server on hyper, multi-thread runtime with 2 workers,
//! keep-alive, one task per connection. Prints `listening on ADDR` on stderr and
//! serves until killed.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tracer_bench_workloads::{arg, instrument, spawn_distinct_types};

async fn hello(
    _request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello World\n",
    ))))
}

fn main() {
    instrument();
    let port: u16 = arg("--port", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build the Tokio runtime");
    runtime.block_on(async move {
        spawn_distinct_types().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("cannot bind 127.0.0.1");
        eprintln!(
            "listening on {}",
            listener.local_addr().expect("local address")
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
}
