//! The PutFile leg: a sink that reads whole request bodies (the WOPI host's side, in this
//! process, never the proxy's), and a client that streams a large body of zeros.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;

/// Bytes of request body the sink has read, over all requests.
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<AtomicU64>,
}

/// Starts a sink on 127.0.0.1: each request's body is read to its end (Content-Length or
/// chunked), then answered `200` with an empty body.
pub fn sink() -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &counter);
            });
        }
    });
    Sink { addr, received }
}

fn serve(stream: TcpStream, counter: &AtomicU64) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(CHUNK, stream);
    loop {
        let mut length = None;
        let mut chunked = false;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse::<u64>().ok();
            }
            chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
        }
        let body = if chunked { read_chunked(&mut reader)? } else { skip(&mut reader, length.unwrap_or(0))? };
        counter.fetch_add(body, Ordering::Relaxed);
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

fn skip(reader: &mut impl Read, mut left: u64) -> std::io::Result<u64> {
    let total = left;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = reader.read(&mut buf[..left.min(CHUNK as u64) as usize])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(total)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if n == 0 {
            let mut end = String::new();
            reader.read_line(&mut end)?;
            return Ok(total);
        }
        total += skip(reader, n)?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Sends `POST target` with `headers` and a body of `bytes` zeros over one connection; returns
/// the response status and the time from the first byte sent to the status read.
pub fn put(addr: SocketAddr, target: &str, headers: &[(&str, &str)], bytes: u64) -> (u16, Duration) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!("POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {bytes}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let zeros = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if stream.write_all(&zeros[..n]).is_err() {
            break; // an early answer (a refusal) closed the connection; read it below
        }
        left -= n as u64;
    }
    (status(&mut stream), started.elapsed())
}

/// `GET target` with `headers` on a new connection; returns the status and the body length.
pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").map_or(all.len(), |p| p + 4);
    let status = String::from_utf8_lossy(&all[..split]).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, all.len() - split)
}

fn status(stream: &mut TcpStream) -> u16 {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `GET target` with `headers`, `n` times over one keep-alive connection, each answer read whole
/// (Content-Length framing); returns how many were `200`.
pub fn get_many(addr: SocketAddr, target: &str, headers: &[(&str, &str)], n: usize) -> usize {
    let stream = TcpStream::connect(addr).unwrap();
    // Bounded: an answer the proxy never finishes fails the bench instead of hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::with_capacity(CHUNK, stream);
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut ok = 0;
    for _ in 0..n {
        writer.write_all(head.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        ok += usize::from(line.split(' ').nth(1) == Some("200"));
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse::<u64>().unwrap();
            }
        }
        skip(&mut reader, length).unwrap();
    }
    ok
}
