//! DNSBL and RHSBL lookups (stub: filled in by the DNS work).

/// One `postscreen_dnsbl_sites` entry: `zone[=filter][*weight]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblSite {
    pub zone: String,
    pub weight: i32,
}
