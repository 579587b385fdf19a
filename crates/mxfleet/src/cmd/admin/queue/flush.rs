//! `mxfleet queue flush [DOMAIN]`: make deferred messages due now (Postfix's
//! `postqueue -f`, or `-s DOMAIN`), for one recipient domain or all of them.

use mxfleet_proto::admin::v1::FlushRequest;

use super::FLUSH;
use crate::cmd::admin::connection::Admin;
use crate::cmd::admin::error::CliError;
use crate::cmd::admin::format::messages;
use crate::cmd::admin::json::FlushJson;
use crate::cmd::admin::{print_json, print_text};

pub async fn run(admin: &Admin, domain: Option<String>, json: bool) -> Result<u8, CliError> {
    let domain = domain
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    let request = admin.request(FlushRequest {
        domain: domain.clone().unwrap_or_default(),
    });
    let reply = admin.call(FLUSH, admin.queue().flush(request)).await?;
    if json {
        print_json(&FlushJson {
            domain,
            made_due: reply.made_due,
        })?;
    } else {
        let scope = domain.map_or_else(|| "all domains".to_owned(), |d| format!("domain {d}"));
        print_text(&format!(
            "{} made due now ({scope})\n",
            messages(reply.made_due)
        ))?;
    }
    Ok(0)
}
