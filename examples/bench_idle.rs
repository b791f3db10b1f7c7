//! Idle keep-alive connections for `benches/load.sh`: opens N connections to
//! a server, sends one HTTP/1.1 request on each and reads its response, then
//! holds them all open (idle) until a line arrives on stdin, closes them and
//! exits.
//!
//! ```sh
//! bench_idle 127.0.0.1:18083 10000 /public/x            # plain HTTP
//! bench_idle 127.0.0.1:18444 10000 /public/x certs/ca.pem   # TLS (SNI localhost)
//! ```
//!
//! Prints `ready <n>` once every connection has had its response (then the
//! caller reads the server's RSS), and `closed` after closing them.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: bench_idle <addr> <connections> <path> [ca.pem for TLS]".into());
    }
    let addr: SocketAddr = args[0].parse()?;
    let n: usize = args[1].parse()?;
    let path = args[2].clone();
    let tls = match args.get(3) {
        Some(ca) => {
            let config = oidc_gateway::server::tls::client_config(Some(std::path::Path::new(ca)))?;
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        // At most 64 handshakes at once: the server's accept queue stays short.
        let gate = Arc::new(Semaphore::new(64));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let gate = gate.clone();
            let tls = tls.clone();
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let mut stream: Box<dyn Stream> = match tls {
                    Some(tls) => Box::new(tls.connect("localhost".try_into()?, tcp).await?),
                    None => Box::new(tcp),
                };
                stream.write_all(request.as_bytes()).await?;
                read_response(&mut stream).await?;
                Ok::<_, BoxError>(stream)
            }));
        }
        let mut held = Vec::with_capacity(n);
        for task in tasks {
            held.push(task.await??);
        }
        println!("ready {}", held.len());
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)
        })
        .await;
        drop(held);
        println!("closed");
        Ok(())
    })
}

/// Reads one response with a `Content-Length` body.
async fn read_response(stream: &mut Box<dyn Stream>) -> Result<(), BoxError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let k = stream.read(&mut chunk).await?;
        if k == 0 {
            return Err("connection closed before the response".into());
        }
        buf.extend_from_slice(&chunk[..k]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("unexpected response: {head}").into());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("response without content-length")?;
            while buf.len() < end + 4 + len {
                let k = stream.read(&mut chunk).await?;
                if k == 0 {
                    return Err("connection closed in the body".into());
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            return Ok(());
        }
    }
}
