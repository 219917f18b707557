//! The baseline: Pingora with nothing of wopi-guard's, forwarding every request to one upstream
//! with the same thread count. The bench runs it as a child process of its own binary.

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use std::net::SocketAddr;

struct Bare(HttpPeer);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.0.clone()))
    }
}

/// Serves on `listen`, forwarding to `upstream`, until killed.
pub fn run(listen: SocketAddr, upstream: SocketAddr, threads: usize) -> ! {
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None::<Opt>, conf);
    server.bootstrap();
    let mut service =
        pingora::proxy::http_proxy_service(&server.configuration, Bare(HttpPeer::new(upstream, false, String::new())));
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever()
}
