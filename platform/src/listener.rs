//! The listening socket of each HTTP service behind the gateway (orders, console,
//! fulfilment, the relay's health port).
//!
//! `tokio::net::TcpListener::bind` asks for a backlog of 128 here. When an on-sale
//! burst makes the gateway open many upstream connections at once, a full accept
//! queue drops the SYNs and the kernel retries them only after 1 s, then 3 s, then 7 s
//! — a request delayed by seconds with nothing wrong in any service. A deep queue
//! (capped by the kernel's `net.core.somaxconn`) lets the burst wait its turn instead.

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may queue before the service accepts them.
const BACKLOG: u32 = 4096;

pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} names no address"),
        )
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted service must get its port back while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn binds_and_accepts() {
        let listener = super::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, connected) =
            tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        assert!(accepted.is_ok() && connected.is_ok());
        assert!(super::bind("no such host:1").await.is_err());
    }
}
