//! The async shell of a connection: TCP connect (optionally from a bound local
//! address), and moving bytes with a deadline per step. Every read feeds the sans-IO
//! [`ReplyBuffer`]; every write is flushed, which matters under TLS, where rustls
//! buffers records.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::response::RawReply;
use super::{ClientError, ClientOptions, SmtpConnection, Stage};
use crate::reply::RemoteReply;
use crate::target::ConnectTarget;

/// Any stream a connection can run over: TCP, TLS over TCP, or an in-memory pipe.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// How much to read from the server at once; replies are short.
const READ_CHUNK: usize = 4096;

/// `Some(output)` if `future` finishes within `limit`.
pub(super) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
}

/// Opens the TCP connection, from `options.bind_address` when set.
pub(super) async fn tcp_connect(
    target: &ConnectTarget,
    options: &ClientOptions,
) -> io::Result<TcpStream> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = options.bind_address {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    // Commands go out in one write each; waiting for more would only add latency.
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl SmtpConnection {
    /// Writes and flushes `bytes` within `limit`.
    pub(super) async fn write_all(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(self.unusable(stage));
        };
        let written = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match within(limit, written).await {
            Some(Ok(())) => Ok(()),
            Some(Err(source)) => Err(ClientError::Io {
                host: self.host.clone(),
                stage,
                source,
            }),
            None => Err(self.timeout(stage, limit)),
        }
    }

    /// Reads the next reply, parsed.
    pub(super) async fn read_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<RemoteReply, ClientError> {
        let raw = self.read_raw_reply(stage, limit).await?;
        raw.parse()
            .map_err(|malformed| ClientError::MalformedReply {
                host: self.host.clone(),
                stage,
                detail: malformed.0,
            })
    }

    /// Reads the next complete reply, all lines, within `limit` for the whole reply.
    pub(super) async fn read_raw_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<RawReply, ClientError> {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match self.replies.next_reply() {
                Ok(Some(raw)) => return Ok(raw),
                Ok(None) => {}
                Err(malformed) => {
                    return Err(ClientError::MalformedReply {
                        host: self.host.clone(),
                        stage,
                        detail: malformed.0,
                    });
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(self.unusable(stage));
            };
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    return Err(ClientError::Closed {
                        host: self.host.clone(),
                        stage,
                    });
                }
                Ok(Ok(n)) => self.replies.extend(&chunk[..n]),
                Ok(Err(source)) => {
                    return Err(ClientError::Io {
                        host: self.host.clone(),
                        stage,
                        source,
                    });
                }
                Err(_) => return Err(self.timeout(stage, limit)),
            }
        }
    }

    /// Takes the stream out for an upgrade; the connection is unusable until it is put
    /// back.
    pub(super) fn take_stream(
        &mut self,
        stage: Stage,
    ) -> Result<Box<dyn ClientStream>, ClientError> {
        self.stream.take().ok_or_else(|| self.unusable(stage))
    }

    pub(super) fn timeout(&self, stage: Stage, after: Duration) -> ClientError {
        ClientError::Timeout {
            host: self.host.clone(),
            stage,
            after,
        }
    }

    pub(super) fn unusable(&self, stage: Stage) -> ClientError {
        ClientError::Unusable {
            host: self.host.clone(),
            stage: self.failed_at.unwrap_or(stage),
        }
    }
}
