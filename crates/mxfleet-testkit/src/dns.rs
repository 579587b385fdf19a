//! In-process DNS servers for tests: [`TestDns`], an authoritative hickory-server that
//! answers from zones the test writes, and [`SilentDns`], which takes queries and never
//! answers (for timeouts).
//!
//! Both listen on one ephemeral port of 127.0.0.1, over UDP and TCP (a resolver falls
//! back to TCP for a truncated answer), so a resolver pointed at `addr` asks nothing
//! else and no test depends on the machine's DNS.
//!
//! Main types:
//! - [`Zone`]: an origin and its records (A, AAAA, MX, TXT, PTR, or any `RData`). Each
//!   zone gets an SOA and an NS record, so unknown names in it are NXDOMAIN and known
//!   names without the asked type are NODATA.
//! - [`TestDnsBuilder`]: zones, and zones that answer SERVFAIL to everything (an
//!   upstream that is down).
//! - [`TestDns`]: the running server, with a log of the queries it received (to prove
//!   that a cache answered instead).
//!
//! Lifecycle: the server's tasks belong to the hickory `Server` held by [`TestDns`];
//! dropping it (or [`TestDns::stop`]) closes the sockets. Names outside every zone get
//! REFUSED, as from any authoritative server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, MX, NS, PTR, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// The TTL of every record served; a resolver that caches keeps answers this long.
const TTL: u32 = 60;
const SERIAL: u32 = 1;

/// One authoritative zone. Owners are zone-file style: `@` is the origin, a name
/// ending in `.` is absolute (and must lie inside the zone), anything else is relative
/// to the origin.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    records: Vec<(Name, RData)>,
}

impl Zone {
    /// An empty zone for `origin` (`example.test` or `example.test.`).
    pub fn new(origin: &str) -> Zone {
        let mut origin = parse_name(origin);
        origin.set_fqdn(true);
        Zone {
            origin,
            records: Vec::new(),
        }
    }

    /// Adds any record.
    pub fn record(mut self, owner: &str, data: RData) -> Zone {
        let owner = self.owner(owner);
        self.records.push((owner, data));
        self
    }

    pub fn a(self, owner: &str, address: Ipv4Addr) -> Zone {
        self.record(owner, RData::A(A(address)))
    }

    pub fn aaaa(self, owner: &str, address: Ipv6Addr) -> Zone {
        self.record(owner, RData::AAAA(AAAA(address)))
    }

    /// An A or AAAA record, whichever `address` is.
    pub fn address(self, owner: &str, address: IpAddr) -> Zone {
        match address {
            IpAddr::V4(v4) => self.a(owner, v4),
            IpAddr::V6(v6) => self.aaaa(owner, v6),
        }
    }

    /// An MX record; `exchange` is absolute (`.` alone is a null MX, RFC 7505).
    pub fn mx(self, owner: &str, preference: u16, exchange: &str) -> Zone {
        self.record(owner, RData::MX(MX::new(preference, parse_name(exchange))))
    }

    /// A TXT record; text longer than one character-string (255 bytes) is split into
    /// several, as zone files and SPF publishers do.
    pub fn txt(self, owner: &str, text: &str) -> Zone {
        self.record(owner, RData::TXT(TXT::new(split_character_strings(text))))
    }

    /// A PTR record pointing at `target` (absolute).
    pub fn ptr(self, owner: &str, target: &str) -> Zone {
        self.record(owner, RData::PTR(PTR(parse_name(target))))
    }

    fn owner(&self, owner: &str) -> Name {
        if owner == "@" {
            return self.origin.clone();
        }
        let name = parse_name(owner);
        if name.is_fqdn() {
            assert!(
                self.origin.zone_of(&name),
                "{owner} is outside the zone {}",
                self.origin
            );
            return name;
        }
        name.append_domain(&self.origin)
            .unwrap_or_else(|e| panic!("owner {owner} in {}: {e}", self.origin))
    }

    fn into_handler(self) -> InMemoryZoneHandler {
        let origin = self.origin;
        let in_zone = |label: &str| {
            parse_name(label)
                .append_domain(&origin)
                .expect("name in zone")
        };
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        // The SOA makes the server authoritative: NXDOMAIN and NODATA carry it, and its
        // minimum (60 s) is the negative TTL.
        let soa = SOA::new(
            in_zone("ns"),
            in_zone("hostmaster"),
            SERIAL,
            3600,
            600,
            86_400,
            TTL,
        );
        zone.upsert_mut(
            Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
            SERIAL,
        );
        zone.upsert_mut(
            Record::from_rdata(origin.clone(), TTL, RData::NS(NS(in_zone("ns")))),
            SERIAL,
        );
        for (owner, data) in self.records {
            let added = zone.upsert_mut(Record::from_rdata(owner.clone(), TTL, data), SERIAL);
            assert!(added, "duplicate record for {owner} in {origin}");
        }
        zone
    }
}

/// Splits `text` into character-strings of at most 255 bytes, on char boundaries.
fn split_character_strings(text: &str) -> Vec<String> {
    let mut strings = vec![String::new()];
    for c in text.chars() {
        let current = strings.last_mut().expect("never empty");
        if current.len() + c.len_utf8() > 255 {
            strings.push(String::new());
        }
        strings.last_mut().expect("never empty").push(c);
    }
    strings
}

fn parse_name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|e| panic!("test DNS name {text:?}: {e}"))
}

/// What a [`TestDns`] will serve.
#[derive(Debug, Default)]
pub struct TestDnsBuilder {
    zones: Vec<Zone>,
    servfail_zones: Vec<Name>,
}

impl TestDnsBuilder {
    pub fn zone(mut self, zone: Zone) -> TestDnsBuilder {
        self.zones.push(zone);
        self
    }

    /// Every name at or under `origin` gets SERVFAIL, as from a server whose upstream
    /// is down. Checked before the zones.
    pub fn servfail_zone(mut self, origin: &str) -> TestDnsBuilder {
        let mut name = parse_name(origin);
        name.set_fqdn(true);
        self.servfail_zones.push(name);
        self
    }

    /// Binds the sockets and starts answering.
    pub async fn start(self) -> TestDns {
        let mut catalog = Catalog::new();
        for zone in self.zones {
            let origin = LowerName::new(&zone.origin);
            catalog.upsert(origin, vec![Arc::new(zone.into_handler())]);
        }
        let queries = Arc::new(Mutex::new(Vec::new()));
        let handler = ZoneServer {
            catalog,
            servfail_zones: self.servfail_zones.iter().map(LowerName::new).collect(),
            queries: queries.clone(),
        };
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().expect("dns addr");
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        TestDns {
            addr,
            queries,
            server,
        }
    }
}

/// A running authoritative server; stops when dropped.
pub struct TestDns {
    /// Where it listens, UDP and TCP.
    pub addr: SocketAddr,
    /// Every query received, in order; shared with the handler.
    queries: Arc<Mutex<Vec<String>>>,
    server: Server<ZoneServer>,
}

impl TestDns {
    pub fn builder() -> TestDnsBuilder {
        TestDnsBuilder::default()
    }

    /// Serves `zones`.
    pub async fn start(zones: impl IntoIterator<Item = Zone>) -> TestDns {
        zones
            .into_iter()
            .fold(TestDns::builder(), TestDnsBuilder::zone)
            .start()
            .await
    }

    /// The queries received so far, oldest first, as `name TYPE`, e.g.
    /// `2.0.0.127.zen.test. A` (names lower-case and absolute).
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().expect("query log").clone()
    }

    /// How many queries arrived.
    pub fn query_count(&self) -> usize {
        self.queries.lock().expect("query log").len()
    }

    /// Closes the sockets and waits for the server's tasks to end.
    pub async fn stop(mut self) {
        self.server
            .shutdown_gracefully()
            .await
            .expect("DNS server shuts down");
    }
}

/// The catalog, behind the query log and the SERVFAIL zones.
struct ZoneServer {
    catalog: Catalog,
    servfail_zones: Vec<LowerName>,
    queries: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl RequestHandler for ZoneServer {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut failing = false;
        if let Ok(info) = request.request_info() {
            let name = info.query.name();
            self.queries
                .lock()
                .expect("query log")
                .push(format!("{name} {}", info.query.query_type()));
            failing = self.servfail_zones.iter().any(|zone| zone.zone_of(name));
        }
        if !failing {
            return self
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        }
        let response = MessageResponseBuilder::from_message_request(request)
            .error_msg(&request.metadata, ResponseCode::ServFail);
        response_handle
            .send_response(response)
            .await
            .expect("send SERVFAIL")
    }
}

/// A "server" that accepts UDP queries and TCP connections and never answers: every
/// query to it times out. The sockets close when it is dropped.
#[derive(Debug)]
pub struct SilentDns {
    pub addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: TcpListener,
}

impl SilentDns {
    pub async fn start() -> SilentDns {
        let (udp, tcp) = bind_udp_and_tcp().await;
        SilentDns {
            addr: udp.local_addr().expect("silent dns addr"),
            _udp: udp,
            _tcp: tcp,
        }
    }
}

/// Binds UDP and TCP on the same ephemeral port of 127.0.0.1, as a DNS server listens;
/// retries when the TCP half of the port happens to be taken.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let port = udp.local_addr().expect("udp addr").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_is_split_into_character_strings() {
        let text = "x".repeat(300);
        let strings = split_character_strings(&text);
        assert_eq!(
            strings.iter().map(String::len).collect::<Vec<_>>(),
            [255, 45]
        );
        assert_eq!(split_character_strings("v=spf1 -all"), ["v=spf1 -all"]);
    }

    #[test]
    fn owners_follow_zone_file_rules() {
        let zone = Zone::new("example.test")
            .a("@", Ipv4Addr::LOCALHOST)
            .a("mx", Ipv4Addr::LOCALHOST)
            .a("abs.example.test.", Ipv4Addr::LOCALHOST);
        let owners: Vec<String> = zone.records.iter().map(|(n, _)| n.to_ascii()).collect();
        assert_eq!(
            owners,
            ["example.test.", "mx.example.test.", "abs.example.test."]
        );
    }

    #[test]
    #[should_panic(expected = "outside the zone")]
    fn absolute_owner_outside_the_zone_is_a_test_bug() {
        let _ = Zone::new("example.test").a("other.test.", Ipv4Addr::LOCALHOST);
    }
}
