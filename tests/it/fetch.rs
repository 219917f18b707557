//! Fetching discovery is bounded: size cap (declared and streamed), timeout, status, redirects.

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

use wopi_guard::keys::{discovery_client, fetch_discovery, FetchError, FetchLimits};
use wopi_guard::testkit::{respond, serve, Body};

async fn server() -> (wopi_guard::testkit::ServerTask, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let task = serve(listener, |req| async move {
        match req.uri().path() {
            "/big" => respond(200, "text/xml", vec![b'x'; 10_000]),
            "/big-chunked" => {
                let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; 1000]))));
                let body: Body = BodyExt::boxed(StreamBody::new(stream::iter(chunks)));
                hyper::Response::new(body)
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                respond(200, "text/xml", "<late/>")
            }
            "/loop" => hyper::Response::builder()
                .status(302)
                .header("location", "/loop")
                .body(wopi_guard::testkit::Body::default())
                .unwrap(),
            "/ok" => respond(200, "text/xml", "<wopi-discovery/>"),
            _ => respond(404, "text/plain", "no"),
        }
    });
    let base = format!("http://{}", task.addr);
    (task, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bound_holds() {
    let (_server, base) = server().await;
    let client = discovery_client(&Default::default()).unwrap();
    let limits = FetchLimits { timeout: Duration::from_millis(500), max_bytes: 4096 };
    let get = |path: &str| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { fetch_discovery(&client, &url, limits).await }
    };

    assert_eq!(get("/ok").await.unwrap(), b"<wopi-discovery/>");
    assert_eq!(get("/big").await.unwrap_err(), FetchError::TooLarge(4096));
    assert_eq!(get("/big-chunked").await.unwrap_err(), FetchError::TooLarge(4096));
    assert_eq!(get("/missing").await.unwrap_err(), FetchError::Status(404));
    assert!(matches!(get("/loop").await.unwrap_err(), FetchError::Transport(e) if e.contains("redirect")));
    let started = Instant::now();
    assert_eq!(get("/slow").await.unwrap_err(), FetchError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(30), "the 500 ms timeout, not the 60 s answer, ended it");
    assert!(matches!(
        fetch_discovery(&client, "http://127.0.0.1:1/hosting/discovery", limits).await.unwrap_err(),
        FetchError::Transport(_)
    ));
}
