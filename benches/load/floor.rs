//! The floor: the least any HTTP proxy on this machine can do with an answer, as a reference
//! for the 1 MiB target. A blocking thread per client connection, one keep-alive upstream
//! connection each; a request head goes up as it came, the answer's head comes back as it is
//! and its `Content-Length` body is moved across either by `read`/`write` through one buffer
//! ([`Mode::Copy`], what nginx and Pingora do) or by `splice(2)` through a pipe, never entering
//! user space ([`Mode::Splice`]). No parsing beyond finding the head's end and the length, no
//! logging, no checks: not a proxy to use, only what forwarding costs before any proxy's own work.
//! It handles what the bench sends (GET heads without a body, one request at a time, answers
//! with a Content-Length; `Connection: close` from the upstream ends the connection) and drops the
//! connection on anything else.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Copy,
    Splice,
}

impl Mode {
    pub fn arg(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Splice => "splice",
        }
    }

    pub fn from_arg(arg: &str) -> Option<Mode> {
        [Mode::Copy, Mode::Splice].into_iter().find(|m| m.arg() == arg)
    }
}

const BUFFER: usize = 64 * 1024;

/// Serves on `listen`, forwarding to `upstream`, until killed.
pub fn run(listen: SocketAddr, upstream: SocketAddr, mode: Mode) -> ! {
    let listener = TcpListener::bind(listen).expect("the floor proxy binds its port");
    loop {
        if let Ok((client, _)) = listener.accept() {
            std::thread::spawn(move || {
                let _ = serve(client, upstream, mode); // a dropped connection is the only error answer
            });
        }
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, mode: Mode) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream)?;
    up.set_nodelay(true)?;
    let pipe = if mode == Mode::Splice { Some(Pipe::new()?) } else { None };
    let mut buf = vec![0u8; BUFFER];
    loop {
        let Some((read, head)) = read_head(&mut client, &mut buf)? else { return Ok(()) };
        if read != head {
            return Err(io::Error::other("a request body or a pipelined request"));
        }
        up.write_all(&buf[..read])?;
        let Some((read, head)) = read_head(&mut up, &mut buf)? else { return Ok(()) };
        let length: u64 = header(&buf[..head], "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("no Content-Length"))?;
        let last = header(&buf[..head], "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut remaining = length.checked_sub((read - head) as u64).ok_or_else(|| io::Error::other("too long"))?;
        client.write_all(&buf[..read])?;
        while remaining > 0 {
            let want = remaining.min(BUFFER as u64) as usize;
            let moved = match &pipe {
                Some(pipe) => pipe.transfer(&up, &client, want)?,
                None => {
                    let n = up.read(&mut buf[..want])?;
                    client.write_all(&buf[..n])?;
                    n
                }
            };
            if moved == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            remaining -= moved as u64;
        }
        if last {
            return Ok(());
        }
    }
}

/// Reads until the end of an HTTP head: `(bytes read, head length)`, `None` at a clean EOF.
fn read_head(from: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<(usize, usize)>> {
    let mut read = 0;
    loop {
        if read == buf.len() {
            return Err(io::Error::other("head too large"));
        }
        let n = from.read(&mut buf[read..])?;
        if n == 0 {
            return if read == 0 { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        read += n;
        if let Some(end) = buf[..read].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some((read, end + 4)));
        }
    }
}

/// The value of header `name` in `head`, trimmed.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A pipe for `splice(2)`: socket → pipe → socket, the bytes staying in the kernel.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        Ok(unsafe { Pipe { read: OwnedFd::from_raw_fd(fds[0]), write: OwnedFd::from_raw_fd(fds[1]) } })
    }

    /// Moves up to `max` bytes from `from` to `to`; 0 at EOF.
    fn transfer(&self, from: &TcpStream, to: &TcpStream, max: usize) -> io::Result<usize> {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE;
        let got = splice(from.as_raw_fd(), self.write.as_raw_fd(), max, flags)?;
        let mut left = got;
        while left > 0 {
            let sent = splice(self.read.as_raw_fd(), to.as_raw_fd(), left, libc::SPLICE_F_MOVE)?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= sent;
        }
        Ok(got)
    }
}

fn splice(from: i32, to: i32, len: usize, flags: libc::c_uint) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call's duration; null offsets (sockets, pipes).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
