//! One proxy's accept loop, and the life of each connection it accepts.
//!
//! A connection runs in one task that owns both sockets. The task races three things:
//! the network's shutdown, an ending ordered through the connection's control (a cut or
//! a `reset`), and the relay itself. Whichever finishes first decides how the sockets
//! are closed: RST for a reset, FIN both ways for a close, nothing more when the peers
//! ended the relay themselves. Owning the sockets in one place is what lets a reset
//! reach both peers as RST; split halves would send FIN when dropped.
//!
//! Layout:
//! - `accept_loop` and `dispatch`: accept, name the client host, admit or refuse.
//! - `serve`: one connection from admission to close; `relay` and `hold` are its two
//!   ways of passing (or not passing) bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tracing::debug;

use super::fabric::{Admission, Admitted, ConnectionControl, Fabric, Side};
use super::link::{Ending, LinkCounters};
use super::pump::{Direction, pump};

/// How long a relayed connection waits for the fronted host to accept before the client
/// is reset, as if the host were down.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, say) so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Reads of unread input before a close, so the kernel sends FIN rather than RST.
const DRAIN_READS: usize = 64;

/// What an admitted connection's task does with it.
#[derive(Clone, Copy, Debug)]
enum Treatment {
    /// Connect to the fronted host and pump both ways.
    Relay,
    /// Connect nothing; read and discard what the client sends.
    Hold,
}

/// Accepts connections for the proxy in front of `fronted` until the network shuts down.
pub(crate) async fn accept_loop(
    fabric: Arc<Fabric>,
    listener: TcpListener,
    fronted: String,
    upstream: SocketAddr,
) {
    loop {
        let accepted = tokio::select! {
            () = fabric.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => dispatch(&fabric, stream, peer, &fronted, upstream),
            Err(error) => {
                debug!(host = %fronted, cause = %error, "proxy_accept_failed");
                tokio::select! {
                    () = fabric.shutdown.cancelled() => break,
                    () = sleep(ACCEPT_RETRY_PAUSE) => {}
                }
            }
        }
    }
    debug!(host = %fronted, "proxy_stopped");
}

/// Refuses a freshly accepted connection, or spawns its task to relay or hold it.
fn dispatch(
    fabric: &Arc<Fabric>,
    stream: TcpStream,
    peer: SocketAddr,
    fronted: &str,
    upstream: SocketAddr,
) {
    let client = fabric.host_of(peer.ip());
    // Delays are ours to add; Nagle's would blur them.
    let _ = stream.set_nodelay(true);
    let (admitted, treatment) = match fabric.admit(&client, fronted) {
        Admission::Refuse => {
            debug!(from = %client, to = fronted, %peer, "proxy_connection_refused");
            reset_socket(stream);
            return;
        }
        Admission::Hold(admitted) => {
            debug!(from = %client, to = fronted, %peer, id = admitted.id, "proxy_connection_held");
            (admitted, Treatment::Hold)
        }
        Admission::Relay(admitted) => {
            debug!(from = %client, to = fronted, %peer, id = admitted.id, "proxy_connection_accepted");
            (admitted, Treatment::Relay)
        }
    };
    let connection = serve(
        Arc::clone(fabric),
        stream,
        upstream,
        fronted.to_owned(),
        admitted,
        treatment,
    );
    fabric.tasks.spawn(connection);
}

/// Runs one admitted connection until it ends, then closes its sockets as the ending
/// requires. The registration inside `admitted` is dropped last, whatever happened.
async fn serve(
    fabric: Arc<Fabric>,
    mut client: TcpStream,
    upstream_addr: SocketAddr,
    fronted: String,
    admitted: Admitted,
    treatment: Treatment,
) {
    let Admitted {
        id,
        client: client_host,
        control,
        forward_counters,
        backward_counters,
        registration,
    } = admitted;
    let mut upstream: Option<TcpStream> = None;
    let mut ending_watch = control.clone();
    let outcome = tokio::select! {
        () = fabric.shutdown.cancelled() => Err(Ending::Close),
        ending = ordered_ending(&mut ending_watch) => Err(ending),
        outcome = async {
            match treatment {
                Treatment::Hold => hold(&mut client, &forward_counters).await,
                Treatment::Relay => {
                    let counters = (&*forward_counters, &*backward_counters);
                    relay(&mut client, &mut upstream, upstream_addr, &control, counters).await
                }
            }
        } => outcome,
    };
    let sockets = std::iter::once(client).chain(upstream);
    match outcome {
        Ok(()) => {
            debug!(id, from = %client_host, to = %fronted, "proxy_connection_finished");
        }
        Err(Ending::Reset) => {
            debug!(id, from = %client_host, to = %fronted, "proxy_connection_reset");
            sockets.for_each(reset_socket);
        }
        Err(Ending::Close) => {
            debug!(id, from = %client_host, to = %fronted, "proxy_connection_closed");
            for mut socket in sockets {
                close_socket(&mut socket).await;
            }
        }
    }
    drop(registration);
}

/// Waits for the fabric to order this connection's end.
async fn ordered_ending(control: &mut watch::Receiver<ConnectionControl>) -> Ending {
    match control.wait_for(|c| c.ending.is_some()).await {
        Ok(control) => control.ending.unwrap_or(Ending::Close),
        // The registry owns the sender for as long as this connection is registered, so
        // this does not happen; closing is the safe answer if it ever does.
        Err(_) => Ending::Close,
    }
}

/// Connects to `upstream` from the client's own loopback address, so that the fronted
/// host sees who is really talking (the primary tells fleet nodes apart that way);
/// any other source connects from the kernel's choice.
async fn connect_as(source: Option<IpAddr>, upstream: SocketAddr) -> std::io::Result<TcpStream> {
    match source {
        Some(IpAddr::V4(ip)) if ip.is_loopback() && upstream.ip().is_loopback() => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
            socket.connect(upstream).await
        }
        _ => TcpStream::connect(upstream).await,
    }
}

/// Connects to the fronted host and pumps both directions until both peers have shut
/// down their sides (`Ok`) or the connection must end.
async fn relay(
    client: &mut TcpStream,
    upstream_slot: &mut Option<TcpStream>,
    upstream_addr: SocketAddr,
    control: &watch::Receiver<ConnectionControl>,
    (forward_counters, backward_counters): (&LinkCounters, &LinkCounters),
) -> Result<(), Ending> {
    let source = client.peer_addr().ok().map(|a| a.ip());
    let upstream = match timeout(UPSTREAM_CONNECT_TIMEOUT, connect_as(source, upstream_addr)).await
    {
        Ok(Ok(stream)) => upstream_slot.insert(stream),
        Ok(Err(error)) => {
            debug!(upstream = %upstream_addr, cause = %error, "proxy_upstream_unreachable");
            return Err(Ending::Reset);
        }
        Err(_) => {
            debug!(upstream = %upstream_addr, cause = "timeout", "proxy_upstream_unreachable");
            return Err(Ending::Reset);
        }
    };
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let forward = Direction::new(control, Side::Forward, forward_counters);
    let backward = Direction::new(control, Side::Backward, backward_counters);
    tokio::try_join!(
        pump(client_read, upstream_write, &forward),
        pump(upstream_read, client_write, &backward),
    )
    .map(|_| ())
}

/// Reads and discards whatever the client sends to a connection accepted under Drop or
/// Blackhole, until the client shuts down its side. Nothing is ever sent back; a held
/// connection stays dead even after the link heals.
async fn hold(client: &mut TcpStream, forward_counters: &LinkCounters) -> Result<(), Ending> {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        match client.read(&mut buffer).await {
            Ok(0) => return Ok(()),
            Ok(read) => LinkCounters::add(&forward_counters.bytes_discarded, read),
            Err(_) => return Err(Ending::Reset),
        }
    }
}

/// Closes with RST: `SO_LINGER` 0, then drop.
fn reset_socket(socket: TcpStream) {
    if let Err(error) = socket.set_zero_linger() {
        debug!(cause = %error, "proxy_zero_linger_failed");
    }
    drop(socket);
}

/// Closes with FIN. Input still unread when a socket closes makes the kernel send RST,
/// so what has arrived is read and thrown away first.
async fn close_socket(socket: &mut TcpStream) {
    let _ = socket.shutdown().await;
    let mut buffer = [0_u8; 4096];
    for _ in 0..DRAIN_READS {
        // WouldBlock (nothing more arrived), end of stream and errors all end the drain.
        if !matches!(socket.try_read(&mut buffer), Ok(read) if read > 0) {
            break;
        }
    }
}
