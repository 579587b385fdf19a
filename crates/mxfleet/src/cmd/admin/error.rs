//! Why an admin command failed, what the operator should do about it, and the exit code
//! that carries it to scripts.
//!
//! [`CliError`] is the one error type of `mxfleet cluster …` and `mxfleet queue …`;
//! [`CliError::exit_code`] is the one place that classifies failures:
//!
//! | exit | meaning                                                                   |
//! |------|---------------------------------------------------------------------------|
//! | 0    | done                                                                      |
//! | 1    | the operation failed: NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, … or the operator declined |
//! | 2    | usage: a bad flag or flag value, or a bulk action without `--yes` off a terminal |
//! | 69   | unavailable: the node cannot be reached, UNAVAILABLE, DEADLINE_EXCEEDED    |
//!
//! [`connect_failure`] turns a transport error (refused, DNS, TLS, not gRPC) into words
//! and a hint; [`is_deadline`] recognises tonic's way of reporting a passed deadline.

use std::time::Duration;

use tonic::{Code, Status};

use crate::cmd::{EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE};

/// Metadata key in which a node names the leader it knows, on UNAVAILABLE.
const LEADER_METADATA: &str = "x-mxfleet-leader";

/// One admin RPC, for messages: its name and the token permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    pub name: &'static str,
    pub permission: &'static str,
}

/// Every failure of an admin command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag, a flag value or a file a flag names is wrong; the text says how to fix it.
    #[error("{0}")]
    Usage(String),
    /// No connection to the endpoint (refused, DNS, TLS handshake).
    #[error("cannot reach {endpoint}: {cause}; {hint}")]
    Unreachable {
        endpoint: String,
        cause: String,
        hint: &'static str,
    },
    /// The client gave up waiting (`--timeout`).
    #[error(
        "{endpoint} did not answer {} within {} (--timeout); the node may be overloaded or \
         without quorum: retry, or ask another node with --endpoint",
        rpc.name,
        humantime::format_duration(*after)
    )]
    Timeout {
        endpoint: String,
        rpc: Rpc,
        after: Duration,
    },
    /// The server answered with an error status.
    #[error("{}", rpc_message(endpoint, *rpc, status, *token_sent))]
    Rpc {
        endpoint: String,
        rpc: Rpc,
        status: Status,
        /// Whether an `authorization` header went out (shapes the UNAUTHENTICATED hint).
        token_sent: bool,
    },
    /// A local failure after the server answered (writing `--out`, a broken stream).
    #[error("{0}")]
    Failed(String),
    /// The operator answered no at the confirmation prompt.
    #[error("cancelled; nothing was changed")]
    Declined,
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unreachable { .. } | CliError::Timeout { .. } => EXIT_UNAVAILABLE,
            CliError::Rpc { status, .. } => exit_code_for(status.code()),
            CliError::Failed(_) | CliError::Declined => EXIT_FAILED,
        }
    }
}

/// The exit code for a gRPC status: 69 when trying again (later, or elsewhere) may help,
/// else 1.
pub fn exit_code_for(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::Unavailable | Code::DeadlineExceeded => EXIT_UNAVAILABLE,
        Code::NotFound
        | Code::FailedPrecondition
        | Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::Unimplemented
        | Code::DataLoss => EXIT_FAILED,
    }
}

/// The leader a node named in its UNAVAILABLE status metadata, if any.
fn named_leader(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_owned())
}

/// What to print for an error status: the server's message plus what to do next.
fn rpc_message(endpoint: &str, rpc: Rpc, status: &Status, token_sent: bool) -> String {
    let said = status.message();
    let said = if said.is_empty() {
        "(no message)"
    } else {
        said
    };
    match status.code() {
        Code::Unavailable => {
            // mxfleet nodes name the leader in their message already; other servers
            // may only set the metadata.
            let leader = named_leader(status)
                .filter(|_| !said.contains("leader"))
                .map(|id| format!(" (the leader is node {id})"))
                .unwrap_or_default();
            format!(
                "{endpoint} cannot serve {} now: {said}{leader}; retry, or ask another node \
                 with --endpoint",
                rpc.name
            )
        }
        Code::DeadlineExceeded => format!(
            "{} timed out on {endpoint}: {said}; retry, or raise --timeout",
            rpc.name
        ),
        // The node's own message may already say where tokens come from.
        Code::Unauthenticated if said.contains("MXFLEET_TOKEN") => {
            format!("{endpoint} did not accept the call: {said}")
        }
        Code::Unauthenticated if token_sent => format!(
            "{endpoint} refused the token: {said}; check MXFLEET_TOKEN or the --token-file \
             (MXFLEET_TOKEN_FILE) against the node's [[admin.tokens]]"
        ),
        Code::Unauthenticated => format!(
            "{endpoint} wants a token: {said}; set MXFLEET_TOKEN or pass --token-file FILE \
             (or MXFLEET_TOKEN_FILE)"
        ),
        Code::PermissionDenied => format!(
            "permission denied: {said}; {} needs a token with the `{}` permission",
            rpc.name, rpc.permission
        ),
        Code::NotFound => format!("not found: {said}"),
        Code::InvalidArgument => format!("invalid argument: {said}"),
        Code::FailedPrecondition => format!("refused: {said}"),
        Code::Unimplemented => format!(
            "{endpoint} does not serve {}: {said}; is the node running an older mxfleet?",
            rpc.name
        ),
        code => format!("{} failed ({code:?}): {said}", rpc.name),
    }
}

/// Whether a status is tonic's report of our `grpc-timeout` deadline passing: CANCELLED
/// with a `TimeoutExpired` source (client side) or its message (from a tonic server).
/// gRPC means DEADLINE_EXCEEDED by it, so it is reported as a timeout (exit 69).
pub fn is_deadline(status: &Status) -> bool {
    status.code() == tonic::Code::Cancelled
        && (std::error::Error::source(status)
            .is_some_and(|e| e.downcast_ref::<tonic::TimeoutExpired>().is_some())
            || status.message() == tonic::TimeoutExpired(()).to_string())
}

pub const NETWORK_HINT: &str =
    "is the node running with [admin] listen set? use --endpoint or MXFLEET_ENDPOINT";
const DNS_HINT: &str = "check the host name in --endpoint (or MXFLEET_ENDPOINT)";
const TLS_HINT: &str = "check --ca-cert (the CA that signed the node's [admin] tls_cert), that \
     the endpoint's host name is in that certificate, and --client-cert/--client-key if the \
     node asks for a client certificate";
const PROTOCOL_HINT: &str = "is it the admin port ([admin] listen, not the peer or SMTP port)? \
     if the node's admin listener uses TLS, use an https:// endpoint with --ca-cert";

/// Why a connect failed, in the operator's words, and what to try.
pub fn connect_failure(
    error: &(dyn std::error::Error + 'static),
    tls: bool,
) -> (String, &'static str) {
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        source = e.source();
    }
    let chain = error_chain(error);
    let lower = chain.to_ascii_lowercase();
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => ("connection refused".into(), NETWORK_HINT),
        Some(std::io::ErrorKind::TimedOut) => ("timed out".into(), NETWORK_HINT),
        _ if tls
            && ["certificate", "tls", "handshake", "alert"]
                .iter()
                .any(|word| lower.contains(word)) =>
        {
            (chain, TLS_HINT)
        }
        _ if lower.contains("lookup") || lower.contains("resolve") || lower.contains("dns") => {
            (chain, DNS_HINT)
        }
        _ => (chain, if tls { TLS_HINT } else { PROTOCOL_HINT }),
    }
}

/// An error and its causes, `outer: inner: innermost`, without repeats or OS error numbers.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        let text = match text.find(" (os error ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    const LIST: Rpc = Rpc {
        name: "QueueAdmin.List",
        permission: "view",
    };

    fn rpc_error(status: Status, token_sent: bool) -> CliError {
        CliError::Rpc {
            endpoint: "http://127.0.0.1:7402".into(),
            rpc: LIST,
            status,
            token_sent,
        }
    }

    #[test]
    fn tonic_deadlines_count_as_timeouts() {
        assert!(is_deadline(&Status::cancelled("Timeout expired")));
        assert!(!is_deadline(&Status::cancelled("client went away")));
        assert!(!is_deadline(&Status::deadline_exceeded("Timeout expired")));
    }

    #[test]
    fn operation_errors_exit_1_and_unavailability_exits_69() {
        for code in [
            Code::NotFound,
            Code::FailedPrecondition,
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
        ] {
            assert_eq!(exit_code_for(code), 1, "{code:?}");
            assert_eq!(rpc_error(Status::new(code, "x"), true).exit_code(), 1);
        }
        for code in [Code::Unavailable, Code::DeadlineExceeded] {
            assert_eq!(exit_code_for(code), 69, "{code:?}");
        }
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Declined.exit_code(), 1);
        let unreachable = CliError::Unreachable {
            endpoint: "http://x".into(),
            cause: "connection refused".into(),
            hint: "h",
        };
        assert_eq!(unreachable.exit_code(), 69);
        let timeout = CliError::Timeout {
            endpoint: "http://x".into(),
            rpc: LIST,
            after: Duration::from_secs(30),
        };
        assert_eq!(timeout.exit_code(), 69);
        assert!(timeout.to_string().contains("within 30s (--timeout)"));
    }

    #[test]
    fn unavailable_shows_the_servers_message_and_the_leader_it_names() {
        let mut status = Status::unavailable("no quorum answered in 5s");
        status
            .metadata_mut()
            .insert(LEADER_METADATA, MetadataValue::from_static("2"));
        let text = rpc_error(status, true).to_string();
        assert!(text.contains("no quorum answered in 5s"), "{text}");
        assert!(text.contains("(the leader is node 2)"), "{text}");
        assert!(text.contains("--endpoint"), "{text}");

        // A node that names the leader itself is not repeated.
        let mut status =
            Status::unavailable("no quorum (node 3 knows node 2 at h:1 as the leader)");
        status
            .metadata_mut()
            .insert(LEADER_METADATA, MetadataValue::from_static("2"));
        let text = rpc_error(status, true).to_string();
        assert_eq!(text.matches("node 2").count(), 1, "{text}");
    }

    #[test]
    fn auth_errors_say_what_to_fix() {
        let missing = rpc_error(Status::unauthenticated("no bearer token"), false).to_string();
        assert!(
            missing.contains("set MXFLEET_TOKEN or pass --token-file"),
            "{missing}"
        );
        let wrong = rpc_error(Status::unauthenticated("unknown token"), true).to_string();
        assert!(wrong.contains("refused the token"), "{wrong}");
        let hinted = rpc_error(
            Status::unauthenticated("no credentials: use MXFLEET_TOKEN"),
            false,
        );
        assert_eq!(
            hinted.to_string().matches("MXFLEET_TOKEN").count(),
            1,
            "{hinted}"
        );
        let denied = rpc_error(Status::permission_denied("token ops lacks view"), true).to_string();
        assert!(denied.contains("token ops lacks view"), "{denied}");
        assert!(denied.contains("the `view` permission"), "{denied}");
    }
}
