//! A minimal HTTP/1.1 server for the stand-ins: a handler function per request, one task per
//! connection, stopped when the returned [`ServerTask`] is dropped.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Response body type of the stand-ins.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole response body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A response with a body and Content-Length.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(full(body))
        .expect("valid response parts")
}

/// The accept loop of a stand-in; aborted on drop.
pub struct ServerTask {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on `listener` in the current runtime.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> ServerTask
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    ServerTask { addr, task }
}

/// Reserves a free port on 127.0.0.1 (Pingora cannot report a port-0 bind).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("bound")
}
