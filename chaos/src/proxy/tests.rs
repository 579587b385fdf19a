//! The proxy on real loopback sockets: two hosts, `a` (127.0.0.11) and `b` (127.0.0.12),
//! each behind a proxy in front of a server that greets every connection with
//! `hello from <host>\n`, records what it receives, and echoes it.
//!
//! Silence is asserted over a short window (`SILENCE`); everything else polls with a
//! deadline. Only the latency and bandwidth tests measure time, and only lower bounds.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mxfleet_testkit::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

use super::{Cut, LinkCondition, Network};

const A_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12));
/// The source of connections from no registered host.
const STRANGER_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long nothing must arrive for a link to count as silent.
const SILENCE: Duration = Duration::from_millis(300);
/// How long anything that should happen may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// A host's server: greets, records, echoes.
struct GreetingEcho {
    address: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl GreetingEcho {
    async fn start(host: &'static str) -> GreetingEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind server");
        let address = listener.local_addr().expect("server address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(greet_and_echo(stream, host, Arc::clone(&record)));
            }
        });
        GreetingEcho { address, received }
    }

    fn received(&self) -> String {
        let received = self.received.lock().expect("record lock");
        String::from_utf8_lossy(&received).into_owned()
    }
}

async fn greet_and_echo(mut stream: TcpStream, host: &str, record: Arc<Mutex<Vec<u8>>>) {
    if stream
        .write_all(format!("hello from {host}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        record
            .lock()
            .expect("record lock")
            .extend_from_slice(&buffer[..read]);
        if stream.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Hosts `a` and `b`, each behind its proxy.
struct Fleet {
    network: Network,
    a: GreetingEcho,
    b: GreetingEcho,
    a_front: SocketAddr,
    b_front: SocketAddr,
}

impl Fleet {
    async fn start() -> Fleet {
        mxfleet_testkit::init_test_logging();
        let network = Network::new();
        network.add_host("a", A_IP);
        network.add_host("b", B_IP);
        let a = GreetingEcho::start("a").await;
        let b = GreetingEcho::start("b").await;
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let a_front = network
            .front("a", any_port, a.address)
            .await
            .expect("front a");
        let b_front = network
            .front("b", any_port, b.address)
            .await
            .expect("front b");
        Fleet {
            network,
            a,
            b,
            a_front,
            b_front,
        }
    }
}

/// Connects to `to` from the loopback address `source`, as a fleet host does.
async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind source");
    timeout(DEADLINE, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads exactly `expected` (and asserts it) within the deadline.
async fn expect_text(stream: &mut TcpStream, expected: &str) {
    let mut received = vec![0_u8; expected.len()];
    timeout(DEADLINE, stream.read_exact(&mut received))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
        .unwrap_or_else(|e| panic!("reading {expected:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&received), expected);
}

async fn expect_silence(stream: &mut TcpStream) {
    let mut buffer = [0_u8; 1024];
    if let Ok(read) = timeout(SILENCE, stream.read(&mut buffer)).await {
        panic!("expected silence, got {read:?}");
    }
}

async fn expect_reset(stream: &mut TcpStream) {
    let mut buffer = [0_u8; 1024];
    loop {
        match timeout(DEADLINE, stream.read(&mut buffer)).await {
            Err(_) => panic!("timed out waiting for a reset"),
            Ok(Err(error)) => {
                assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
                return;
            }
            Ok(Ok(0)) => panic!("expected a reset, got end of stream"),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn expect_end_of_stream(stream: &mut TcpStream) {
    let mut buffer = [0_u8; 1024];
    let read = timeout(DEADLINE, stream.read(&mut buffer))
        .await
        .expect("timed out waiting for end of stream");
    assert!(
        matches!(read, Ok(0)),
        "expected end of stream, got {read:?}"
    );
}

/// Connects `a` to `b` through b's proxy and reads b's greeting.
async fn greeted(source: IpAddr, front: SocketAddr, host: &str) -> TcpStream {
    let mut stream = connect_from(source, front).await;
    expect_text(&mut stream, &format!("hello from {host}\n")).await;
    stream
}

async fn echoed(stream: &mut TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).await.expect("write");
    expect_text(stream, text).await;
}

#[tokio::test]
async fn clean_links_pass_bytes_both_ways_and_count_them() {
    let fleet = Fleet::start().await;
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    echoed(&mut a_to_b, "ping\n").await;
    wait_for("link counters", DEADLINE, || {
        let sent = fleet.network.link_stats("a", "b");
        let answered = fleet.network.link_stats("b", "a");
        sent.connections_accepted == 1
            && sent.bytes_passed == 5
            && answered.bytes_passed == 13 + 5
            && sent.bytes_discarded + answered.bytes_discarded == 0
    })
    .await;
}

#[tokio::test]
async fn refuse_resets_new_and_live_connections_and_replies_across_it() {
    let fleet = Fleet::start().await;
    let mut live = greeted(A_IP, fleet.b_front, "b").await;
    fleet.network.set("a", "b", LinkCondition::cut(Cut::Refuse));
    expect_reset(&mut live).await;

    let mut fresh = connect_from(A_IP, fleet.b_front).await;
    expect_reset(&mut fresh).await;
    assert_eq!(fleet.network.link_stats("a", "b").connections_refused, 1);

    // b may connect to a, but a's greeting crosses the refused link and resets it.
    let mut b_to_a = connect_from(B_IP, fleet.a_front).await;
    expect_reset(&mut b_to_a).await;
}

#[tokio::test]
async fn blackhole_holds_new_connections_and_never_delivers_after_heal() {
    let fleet = Fleet::start().await;
    let mut live = greeted(A_IP, fleet.b_front, "b").await;
    fleet
        .network
        .set("a", "b", LinkCondition::cut(Cut::Blackhole));

    let mut held = connect_from(A_IP, fleet.b_front).await;
    held.write_all(b"held\n").await.expect("write held");
    live.write_all(b"lost\n").await.expect("write lost");
    expect_silence(&mut held).await;
    expect_silence(&mut live).await;

    fleet.network.heal();
    live.write_all(b"after\n").await.expect("write after");
    held.write_all(b"after\n").await.expect("write after");
    expect_silence(&mut live).await;
    expect_silence(&mut held).await;
    assert_eq!(fleet.b.received(), "", "b must never see discarded bytes");
    wait_for("discards counted", DEADLINE, || {
        fleet.network.link_stats("a", "b").bytes_discarded == 5 + 5 + 6 + 6
    })
    .await;

    let mut healed = greeted(A_IP, fleet.b_front, "b").await;
    echoed(&mut healed, "back\n").await;
}

#[tokio::test]
async fn drop_closes_live_connections_and_holds_new_ones_silently() {
    let fleet = Fleet::start().await;
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    let mut b_to_a = greeted(B_IP, fleet.a_front, "a").await;
    fleet.network.set("a", "b", LinkCondition::cut(Cut::Drop));
    expect_end_of_stream(&mut a_to_b).await;
    expect_end_of_stream(&mut b_to_a).await;

    let mut fresh = connect_from(A_IP, fleet.b_front).await;
    expect_silence(&mut fresh).await;
    assert_eq!(fleet.network.link_stats("a", "b").connections_held, 1);
}

#[tokio::test]
async fn a_one_way_cut_discards_only_its_direction_whoever_opened_the_connection() {
    let fleet = Fleet::start().await;
    let mut opened_by_a = greeted(A_IP, fleet.b_front, "b").await;
    fleet
        .network
        .set("a", "b", LinkCondition::cut(Cut::Blackhole));

    // Opened by b after the cut: b's request reaches a; a's greeting and echo never
    // reach b.
    let mut opened_by_b = connect_from(B_IP, fleet.a_front).await;
    opened_by_b.write_all(b"ping\n").await.expect("write");
    wait_for("a receives b's ping", DEADLINE, || {
        fleet.a.received() == "ping\n"
    })
    .await;
    expect_silence(&mut opened_by_b).await;

    // Opened by a before the cut: a's request never reaches b.
    opened_by_a.write_all(b"pong\n").await.expect("write");
    expect_silence(&mut opened_by_a).await;
    assert_eq!(fleet.b.received(), "");

    // The mirror image: with b→a cut, a's request reaches b and b's replies never
    // reach a.
    fleet.network.heal();
    fleet
        .network
        .set("b", "a", LinkCondition::cut(Cut::Blackhole));
    let mut mirrored = connect_from(A_IP, fleet.b_front).await;
    mirrored.write_all(b"ping\n").await.expect("write");
    wait_for("b receives a's ping", DEADLINE, || {
        fleet.b.received() == "ping\n"
    })
    .await;
    expect_silence(&mut mirrored).await;
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let fleet = Fleet::start().await;
    let latency = Duration::from_millis(100);
    fleet
        .network
        .degrade(&["a"], &["b"], latency, Duration::ZERO, None);

    let started = Instant::now();
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    assert!(
        started.elapsed() >= latency,
        "the greeting crossed one delayed link"
    );

    let started = Instant::now();
    echoed(&mut a_to_b, "ping\n").await;
    assert!(
        started.elapsed() >= 2 * latency,
        "a round trip crosses two delayed links"
    );
}

#[tokio::test]
async fn jitter_delays_but_never_reorders() {
    let fleet = Fleet::start().await;
    let jitter = Duration::from_millis(20);
    fleet
        .network
        .degrade(&["a"], &["b"], Duration::from_millis(1), jitter, None);
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    let mut sent = String::new();
    for line in 0..200 {
        let text = format!("line {line}\n");
        a_to_b.write_all(text.as_bytes()).await.expect("write");
        sent.push_str(&text);
        tokio::task::yield_now().await;
    }
    expect_text(&mut a_to_b, &sent).await;
    assert_eq!(fleet.b.received(), sent);
}

#[tokio::test]
async fn bandwidth_cap_paces_a_bulk_transfer() {
    let fleet = Fleet::start().await;
    let condition = LinkCondition {
        bandwidth: Some(100_000),
        ..LinkCondition::default()
    };
    fleet.network.set("a", "b", condition);
    let a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    let (mut reading, mut writing) = a_to_b.into_split();
    let bulk = vec![b'x'; 200_000];
    let mut echo = vec![0_u8; bulk.len()];

    let started = Instant::now();
    let (written, read) = tokio::join!(
        writing.write_all(&bulk),
        timeout(DEADLINE, reading.read_exact(&mut echo)),
    );
    written.expect("write bulk");
    read.expect("bulk echoed in time").expect("read echo");
    assert_eq!(echo, bulk);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "200 KB at 100 KB/s took {took:?}"
    );
}

#[tokio::test]
async fn reset_rsts_live_connections_and_new_ones_work() {
    let fleet = Fleet::start().await;
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    let mut b_to_a = greeted(B_IP, fleet.a_front, "a").await;
    fleet.network.reset("b", "a");
    expect_reset(&mut a_to_b).await;
    expect_reset(&mut b_to_a).await;

    let mut fresh = greeted(A_IP, fleet.b_front, "b").await;
    echoed(&mut fresh, "again\n").await;
}

#[tokio::test]
async fn unknown_sources_are_client_and_unaffected_by_host_faults() {
    let fleet = Fleet::start().await;
    fleet.network.partition(&["a"], &["b"], Cut::Refuse);
    let mut stranger = greeted(STRANGER_IP, fleet.b_front, "b").await;
    echoed(&mut stranger, "hi\n").await;
    assert_eq!(
        fleet.network.link_stats("client", "b").connections_accepted,
        1
    );

    fleet
        .network
        .set("client", "b", LinkCondition::cut(Cut::Refuse));
    expect_reset(&mut stranger).await;
    let mut refused = connect_from(STRANGER_IP, fleet.b_front).await;
    expect_reset(&mut refused).await;
}

#[tokio::test]
async fn a_proxy_whose_upstream_is_down_resets_its_client() {
    let network = Network::new();
    network.add_host("a", A_IP);
    let vacant = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let down = vacant.local_addr().expect("address");
    drop(vacant);
    let front = network
        .front("down", "127.0.0.1:0".parse().expect("address"), down)
        .await
        .expect("front");
    let mut a_to_down = connect_from(A_IP, front).await;
    expect_reset(&mut a_to_down).await;
}

#[tokio::test]
async fn connections_leave_the_registry_however_they_end() {
    let fleet = Fleet::start().await;
    let mut relayed = Vec::new();
    for _ in 0..10 {
        relayed.push(greeted(A_IP, fleet.b_front, "b").await);
    }
    let mut reset = greeted(B_IP, fleet.a_front, "a").await;
    fleet
        .network
        .set("a", "b", LinkCondition::cut(Cut::Blackhole));
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(A_IP, fleet.b_front).await);
    }
    wait_for("every connection registered", DEADLINE, || {
        fleet.network.live_connections() == 16
    })
    .await;

    fleet.network.heal();
    drop(relayed);
    drop(held);
    fleet.network.reset("a", "b");
    expect_reset(&mut reset).await;
    wait_for("the registry empties", DEADLINE, || {
        fleet.network.live_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_the_proxies() {
    let fleet = Fleet::start().await;
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    fleet.network.shutdown();
    expect_end_of_stream(&mut a_to_b).await;
    timeout(DEADLINE, fleet.network.stopped())
        .await
        .expect("every proxy task ends");
    assert!(TcpStream::connect(fleet.b_front).await.is_err());
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("address");
    assert!(
        fleet
            .network
            .front("b", any_port, fleet.b.address)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dropping_the_last_handle_shuts_the_network_down() {
    let fleet = Fleet::start().await;
    let mut a_to_b = greeted(A_IP, fleet.b_front, "b").await;
    let clone = fleet.network.clone();
    drop(fleet.network);
    echoed(&mut a_to_b, "still here\n").await;
    drop(clone);
    expect_end_of_stream(&mut a_to_b).await;
}

#[tokio::test]
async fn the_fronted_host_sees_the_clients_own_loopback_address() {
    let network = Network::new();
    network.add_host("a", A_IP);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front = network
        .front(
            "server",
            "127.0.0.1:0".parse().expect("address"),
            listener.local_addr().expect("address"),
        )
        .await
        .expect("front");
    let _from_a = connect_from(A_IP, front).await;
    let (_, seen) = timeout(DEADLINE, listener.accept())
        .await
        .expect("accepted in time")
        .expect("accept");
    assert_eq!(
        seen.ip(),
        A_IP,
        "the primary tells fleet nodes apart by source"
    );
    let _stranger = connect_from(STRANGER_IP, front).await;
    let (_, seen) = timeout(DEADLINE, listener.accept())
        .await
        .expect("accepted in time")
        .expect("accept");
    assert_eq!(seen.ip(), STRANGER_IP);
}
