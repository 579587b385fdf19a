//! DNSBL and RHSBL lookups: postscreen's weighted score for the client IP, and
//! `reject_rhsbl_sender` for the sender domain.
//!
//! A site is written as in Postfix's `postscreen_dnsbl_sites`:
//! `zone[=filter][*weight]`, e.g. `zen.spamhaus.org=127.0.0.[2..11]*3` or the allowlist
//! `list.dnswl.org=127.0.[0..255].[1..3]*-2`. Each zone is asked once per client, all
//! zones at the same time; every entry whose filter passes one of the zone's answers
//! adds its weight. A site that times out or fails is never a listing: the verdict
//! names it in `failed` and the mail goes on (fail-open).
//!
//! Without a filter an answer counts when it is in 127.0.0.0/8 (RFC 5782 §2.1), except
//! 127.255.255.0/24, where DNSBLs such as Spamhaus answer errors (query refused, e.g.
//! through a public resolver): counting those would list every client. Such answers
//! are reported as failed sites instead.
//!
//! Layout: [`DnsblSite`] and [`AnswerFilter`] (parsing and matching), [`Dnsbl`] (the
//! lookups and the per-client cache), [`DnsblVerdict`] and [`DnsblHit`] with their
//! Postfix-worded replies, and `VerdictCache`, bounded and sans-IO (it takes `now`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::warn;

use crate::checks::config::DnsblConfig;
use crate::checks::dns::{CheckResolver, DnsLookupError, canonical_ip, reversed_address};
use crate::reply::Reply;

/// One `postscreen_dnsbl_sites` entry: `zone[=filter][*weight]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblSite {
    /// Lower-case, without the trailing dot.
    pub zone: String,
    /// Which answers count; `None`: any listing code (see the module header).
    pub filter: Option<AnswerFilter>,
    /// Added to the score when listed; negative for allowlists. 1 when not written.
    pub weight: i32,
}

/// A reply filter `d.d.d.d`: each `d` a number or a `[...]` list of `;`-separated
/// numbers and `n..m` ranges, e.g. `127.0.[0..254].[2;4;6..8]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerFilter {
    octets: [Vec<RangeInclusive<u8>>; 4],
}

impl AnswerFilter {
    pub fn matches(&self, answer: Ipv4Addr) -> bool {
        self.octets
            .iter()
            .zip(answer.octets())
            .all(|(ranges, octet)| ranges.iter().any(|range| range.contains(&octet)))
    }
}

/// The answers that count for a site without a filter.
fn is_listing_code(answer: Ipv4Addr) -> bool {
    let [a, b, c, _] = answer.octets();
    a == 127 && !(b == 255 && c == 255)
}

impl DnsblSite {
    /// Whether `answer` counts for this entry.
    pub fn accepts(&self, answer: Ipv4Addr) -> bool {
        match &self.filter {
            Some(filter) => filter.matches(answer),
            None => is_listing_code(answer),
        }
    }
}

impl FromStr for DnsblSite {
    /// A message for the config error report, quoting the offending part.
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.chars().any(char::is_whitespace) {
            return Err(format!(
                "{text:?}: white space is not allowed in a DNSBL site"
            ));
        }
        let (rest, weight) = match text.split_once('*') {
            None => (text, 1),
            Some((rest, weight)) => {
                let weight = weight.parse::<i32>().map_err(|_| {
                    format!("{text:?}: the weight {weight:?} is not an integer (as in zone*3 or zone*-2)")
                })?;
                (rest, weight)
            }
        };
        let (zone, filter) = match rest.split_once('=') {
            None => (rest, None),
            Some((zone, filter)) => (
                zone,
                Some(
                    parse_filter(filter)
                        .map_err(|why| format!("{text:?}: bad reply filter {filter:?}: {why}"))?,
                ),
            ),
        };
        let zone = parse_zone(zone).ok_or_else(|| {
            format!("{text:?}: {zone:?} is not a DNS zone name (as in zen.spamhaus.org)")
        })?;
        Ok(DnsblSite {
            zone,
            filter,
            weight,
        })
    }
}

fn parse_zone(zone: &str) -> Option<String> {
    let zone = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (zone.len() <= 253 && zone.split('.').all(label_ok)).then_some(zone)
}

fn parse_filter(filter: &str) -> Result<AnswerFilter, String> {
    // Split on the dots between octets, not on those of `n..m` inside brackets.
    let mut parts = Vec::new();
    let (mut start, mut in_list) = (0, false);
    for (index, c) in filter.char_indices() {
        match c {
            '[' => in_list = true,
            ']' => in_list = false,
            '.' if !in_list => {
                parts.push(&filter[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&filter[start..]);
    let [a, b, c, d] = parts.as_slice() else {
        return Err("it needs four octets, as in 127.0.0.[2..11]".to_owned());
    };
    Ok(AnswerFilter {
        octets: [
            parse_octet_set(a)?,
            parse_octet_set(b)?,
            parse_octet_set(c)?,
            parse_octet_set(d)?,
        ],
    })
}

fn parse_octet_set(part: &str) -> Result<Vec<RangeInclusive<u8>>, String> {
    let Some(list) = part.strip_prefix('[') else {
        let octet = parse_octet(part)?;
        return Ok(vec![octet..=octet]);
    };
    let list = list
        .strip_suffix(']')
        .ok_or_else(|| format!("{part:?} has no closing ]"))?;
    list.split(';')
        .map(|item| match item.split_once("..") {
            None => parse_octet(item).map(|octet| octet..=octet),
            Some((low, high)) => {
                let (low, high) = (parse_octet(low)?, parse_octet(high)?);
                if low > high {
                    return Err(format!("the range {item:?} runs backwards"));
                }
                Ok(low..=high)
            }
        })
        .collect()
}

fn parse_octet(text: &str) -> Result<u8, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a number"));
    }
    text.parse::<u8>()
        .map_err(|_| format!("{text} is not an octet (0-255)"))
}

impl fmt::Display for AnswerFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, ranges) in self.octets.iter().enumerate() {
            if index > 0 {
                f.write_str(".")?;
            }
            let item = |r: &RangeInclusive<u8>| match r.start() == r.end() {
                true => r.start().to_string(),
                false => format!("{}..{}", r.start(), r.end()),
            };
            match ranges.as_slice() {
                [single] if single.start() == single.end() => write!(f, "{}", single.start())?,
                _ => {
                    let items: Vec<String> = ranges.iter().map(item).collect();
                    write!(f, "[{}]", items.join(";"))?;
                }
            }
        }
        Ok(())
    }
}

/// Written back in the syntax it was parsed from.
impl fmt::Display for DnsblSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone)?;
        if let Some(filter) = &self.filter {
            write!(f, "={filter}")?;
        }
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

/// One entry that listed the client (or the sender domain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblHit {
    pub zone: String,
    /// The first answer the entry's filter passed.
    pub code: Ipv4Addr,
    pub weight: i32,
}

impl DnsblHit {
    /// `reject_rhsbl_sender`'s refusal of `sender` (an address, without `<>`).
    pub fn sender_reply(&self, sender: &str) -> Reply {
        Reply::new(
            554,
            "5.7.1",
            format!(
                "<{}>: Sender address rejected: blocked using {}",
                crate::policy::echo(sender),
                self.zone
            ),
        )
    }
}

/// What the DNSBL sites say about one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblVerdict {
    /// The summed weights of `hits`.
    pub score: i32,
    /// Every entry that listed the client, in config order.
    pub hits: Vec<DnsblHit>,
    /// Zones that gave no usable answer: (zone, cause). Never counted as listings.
    pub failed: Vec<(String, String)>,
    /// Answered from the per-client cache, without a query.
    pub from_cache: bool,
    /// The threshold configured when the verdict was made; [`DnsblVerdict::reply`]
    /// names the lists needed to reach it.
    pub threshold: i32,
}

impl DnsblVerdict {
    /// Whether the score reaches `threshold`. An allowlisted client (only negative
    /// hits) or one on no list never does, whatever the threshold.
    pub fn blocks(&self, threshold: i32) -> bool {
        self.score >= threshold && self.hits.iter().any(|hit| hit.weight > 0)
    }

    /// Postfix's refusal, naming the heaviest list, or the lists that together
    /// reached the threshold, heaviest first:
    /// `554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org`.
    pub fn reply(&self, ip: IpAddr) -> Reply {
        let mut listing: Vec<&DnsblHit> = self.hits.iter().filter(|h| h.weight > 0).collect();
        listing.sort_by_key(|hit| std::cmp::Reverse(hit.weight));
        let allowances: i32 = self.hits.iter().map(|h| h.weight.min(0)).sum();
        let needed = self.threshold.saturating_sub(allowances);
        let mut named: Vec<&str> = Vec::new();
        let mut sum = 0i32;
        for hit in &listing {
            if !named.contains(&hit.zone.as_str()) {
                named.push(&hit.zone);
            }
            sum = sum.saturating_add(hit.weight);
            if sum >= needed {
                break;
            }
        }
        Reply::new(
            554,
            "5.7.1",
            format!(
                "Service unavailable; Client host [{}] blocked using {}",
                canonical_ip(ip),
                named.join(", ")
            ),
        )
    }
}

/// Where [`Dnsbl`] reads the time, for the cache. Tests pass a clock they move.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The DNSBL and RHSBL sites of a node, their resolver, and the per-client cache.
pub struct Dnsbl {
    sites: Vec<DnsblSite>,
    rhsbl_sites: Vec<DnsblSite>,
    threshold: i32,
    /// Every lookup is limited to the configured DNS timeout.
    resolver: CheckResolver,
    /// Verdicts by client, shared by every session; replaced whole with the config.
    cache: Mutex<VerdictCache>,
    clock: Clock,
}

impl fmt::Debug for Dnsbl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dnsbl")
            .field("sites", &self.sites)
            .field("rhsbl_sites", &self.rhsbl_sites)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl Dnsbl {
    /// Each DNS lookup gives up after `timeout` (the site then counts as failed).
    pub fn new(config: &DnsblConfig, resolver: &CheckResolver, timeout: Duration) -> Self {
        Dnsbl {
            sites: config.sites.clone(),
            rhsbl_sites: config.rhsbl_sender_sites.clone(),
            threshold: config.threshold,
            resolver: resolver.with_deadline(timeout),
            cache: Mutex::new(VerdictCache::new(config.cache_ttl, config.cache_entries)),
            clock: Arc::new(Instant::now),
        }
    }

    /// Reads the time from `clock` instead of `Instant::now`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The client's score over every DNSBL site, from the cache when it is fresh.
    /// Verdicts with a failed site are not cached, so the next client asks again.
    pub async fn score_client(&self, ip: IpAddr) -> DnsblVerdict {
        let ip = canonical_ip(ip);
        if let Some(mut cached) = self.lock_cache().get(ip, (self.clock)()) {
            cached.from_cache = true;
            return cached;
        }
        let prefix = reversed_address(ip);
        let (hits, failed) = self.ask(&self.sites, &prefix).await;
        for (zone, cause) in &failed {
            warn!(zone = %zone, client = %ip, cause = %cause, "dnsbl_lookup_failed");
        }
        let verdict = DnsblVerdict {
            score: hits
                .iter()
                .fold(0i32, |sum, hit| sum.saturating_add(hit.weight)),
            hits,
            failed,
            from_cache: false,
            threshold: self.threshold,
        };
        if verdict.failed.is_empty() {
            self.lock_cache()
                .insert(ip, verdict.clone(), (self.clock)());
        }
        verdict
    }

    /// The first RHSBL entry (in config order) that lists `domain`, if any.
    pub async fn listed_domain(&self, domain: &str) -> Option<DnsblHit> {
        let domain = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        // An address literal ([192.0.2.1]) has no domain to look up.
        if domain.is_empty() || domain.starts_with('[') || self.rhsbl_sites.is_empty() {
            return None;
        }
        let (hits, failed) = self.ask(&self.rhsbl_sites, &domain).await;
        for (zone, cause) in &failed {
            warn!(zone = %zone, domain = %domain, cause = %cause, "dnsbl_lookup_failed");
        }
        hits.into_iter().next()
    }

    /// Asks every distinct zone of `sites` about `prefix` at once; returns the
    /// entries that list it and the zones that failed.
    async fn ask(
        &self,
        sites: &[DnsblSite],
        prefix: &str,
    ) -> (Vec<DnsblHit>, Vec<(String, String)>) {
        let mut zones: Vec<&str> = Vec::new();
        for site in sites {
            if !zones.contains(&site.zone.as_str()) {
                zones.push(&site.zone);
            }
        }
        let resolver = &self.resolver;
        let answers = join_all(zones.iter().map(|zone| {
            let name = format!("{prefix}.{zone}");
            async move { resolver.ipv4(&name).await }
        }))
        .await;
        let answers: HashMap<&str, Result<Vec<Ipv4Addr>, DnsLookupError>> =
            zones.iter().copied().zip(answers).collect();
        let mut hits = Vec::new();
        for site in sites {
            if let Some(Ok(codes)) = answers.get(site.zone.as_str())
                && let Some(code) = codes.iter().find(|code| site.accepts(**code))
            {
                hits.push(DnsblHit {
                    zone: site.zone.clone(),
                    code: *code,
                    weight: site.weight,
                });
            }
        }
        let mut failed = Vec::new();
        for zone in zones {
            match &answers[zone] {
                Err(error) if error.is_temporary() => {
                    failed.push((zone.to_owned(), error.cause()));
                }
                Ok(codes) if !hits.iter().any(|hit| hit.zone == zone) => {
                    if let Some(odd) = codes.iter().find(|code| !is_listing_code(**code)) {
                        failed.push((
                            zone.to_owned(),
                            format!("answered {odd}, an error code rather than a listing"),
                        ));
                    }
                }
                _ => {}
            }
        }
        (hits, failed)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, VerdictCache> {
        // The cache holds no invariant a panicking holder could break half-way.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Verdicts by client IP, each kept `ttl`, at most `capacity` of them; the oldest goes
/// first. Every entry lives as long, so the oldest is also the first to expire.
#[derive(Debug)]
struct VerdictCache {
    ttl: Duration,
    capacity: usize,
    /// ip → (insertion number, when stored, verdict).
    entries: HashMap<IpAddr, (u64, Instant, DnsblVerdict)>,
    /// Insertion number → ip, oldest first.
    order: BTreeMap<u64, IpAddr>,
    next: u64,
}

impl VerdictCache {
    fn new(ttl: Duration, capacity: usize) -> Self {
        VerdictCache {
            ttl,
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    fn get(&mut self, ip: IpAddr, now: Instant) -> Option<DnsblVerdict> {
        let (_, stored, verdict) = self.entries.get(&ip)?;
        if now.saturating_duration_since(*stored) < self.ttl {
            return Some(verdict.clone());
        }
        self.remove(ip);
        None
    }

    fn insert(&mut self, ip: IpAddr, verdict: DnsblVerdict, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.remove(ip);
        // Drop what expired, then the oldest until there is room.
        while let Some((_, oldest)) = self.order.first_key_value() {
            let oldest = *oldest;
            let expired = self
                .entries
                .get(&oldest)
                .is_none_or(|(_, stored, _)| now.saturating_duration_since(*stored) >= self.ttl);
            if !expired && self.entries.len() < self.capacity {
                break;
            }
            self.remove(oldest);
        }
        let number = self.next;
        self.next += 1;
        self.order.insert(number, ip);
        self.entries.insert(ip, (number, now, verdict));
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some((number, _, _)) = self.entries.remove(&ip) {
            self.order.remove(&number);
        }
    }
}
