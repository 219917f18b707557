//! Large bodies stream through unchanged in both directions.

use crate::common::*;
use futures_util::StreamExt;

const SIZE: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_both_ways_byte_identical() {
    let h = Harness::start().await;

    let target = format!("/wopi/files/big/contents?access_token=t&size={SIZE}");
    let proof = h.sign(&target);
    let mut request = h.client.get(h.local(&target));
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut len = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        ctx.update(&chunk);
    }
    assert_eq!(len, SIZE);
    assert_eq!(hex::encode(ctx.finish()), content_digest(SIZE), "GetFile body differs");

    let target = "/wopi/files/big/contents?access_token=t";
    let proof = h.sign(target);
    let body: Vec<u8> = (0..SIZE).map(|i| (i * 7 + (i >> 9)) as u8).collect();
    let want = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body));
    let (status, answer) = h.send("POST", target, Some(&proof), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let seen = h.host.last().unwrap();
    assert_eq!(seen.body_len, SIZE);
    assert_eq!(seen.body_sha256, want, "PutFile body differs");
    assert!(answer.contains(&want));
}
