//! Reaching a node's admin API: the flags every admin command shares ([`ClientArgs`]),
//! the bearer token, TLS, and [`Admin`], the connected handle the subcommands call
//! through.
//!
//! Lifecycle: a subcommand builds one [`Admin`] with [`Admin::connect`] (an eager
//! connect, so a wrong `--endpoint` is reported once, before any RPC), makes its calls
//! through [`Admin::call`] / [`Admin::open`] (each bounded by `--timeout`), and drops it
//! when it returns. The token lives in the interceptor of each client, marked sensitive
//! so it never shows in debug output.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use mxfleet_proto::admin::v1::cluster_admin_client::ClusterAdminClient;
use mxfleet_proto::admin::v1::queue_admin_client::QueueAdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use tonic::{Request, Response, Status, Streaming};

use super::error::{CliError, NETWORK_HINT, Rpc, connect_failure, error_chain, is_deadline};

/// The default admin endpoint: the loopback listener of `[admin] listen`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7402";

/// Connection and output flags shared by every `mxfleet cluster …` and `mxfleet queue …`
/// command (accepted before or after the subcommand).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connection and output")]
pub struct ClientArgs {
    /// The node's admin API: http://HOST:PORT, or https://HOST:PORT with --ca-cert.
    #[arg(long, global = true, env = "MXFLEET_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL")]
    pub endpoint: String,
    /// A file holding the bearer token (else the MXFLEET_TOKEN variable is used).
    #[arg(long, global = true, env = "MXFLEET_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the node's admin certificate (https endpoints).
    #[arg(long, global = true, env = "MXFLEET_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for nodes that ask for one (mutual TLS); needs --client-key.
    #[arg(long, global = true, env = "MXFLEET_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "MXFLEET_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// How long to wait for the connection and for each answer (bulk actions stream
    /// without an overall limit).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Duration,
    /// Print one JSON document on stdout instead of tables (field names are stable).
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero, e.g. 30s".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e}; write it like 30s, 2m or 1m30s")),
    }
}

/// Adds `authorization: Bearer <token>` to every call, when a token was given.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The transport every client uses: the channel with the token interceptor.
pub type AdminService = InterceptedService<Channel, BearerToken>;

/// A connected admin API: the subcommands' only way to the node.
pub struct Admin {
    /// As the operator wrote it, for messages.
    endpoint: String,
    channel: Channel,
    token: BearerToken,
    timeout: Duration,
    /// Whether the endpoint is https, for hints.
    tls: bool,
}

impl Admin {
    /// Reads the token and TLS files, then connects (within `--timeout`).
    /// `env_token` is the value of `MXFLEET_TOKEN`, passed in so tests choose it.
    pub async fn connect(args: &ClientArgs, env_token: Option<OsString>) -> Result<Self, CliError> {
        let token = BearerToken(bearer_value(args.token_file.as_deref(), env_token)?);
        let tls = endpoint_is_tls(&args.endpoint)?;
        let mut endpoint = Endpoint::from_shared(args.endpoint.clone())
            .map_err(|e| CliError::Usage(format!("--endpoint {}: {e}", args.endpoint)))?
            .connect_timeout(args.timeout)
            .tcp_nodelay(true);
        if let Some(config) = tls_config(args, tls)? {
            endpoint = endpoint.tls_config(config).map_err(|e| {
                CliError::Usage(format!(
                    "cannot use the TLS files: {}; --ca-cert, --client-cert and --client-key \
                     take PEM files",
                    error_chain(&e)
                ))
            })?;
        }
        let unreachable = |cause: String, hint| CliError::Unreachable {
            endpoint: args.endpoint.clone(),
            cause,
            hint,
        };
        let channel = match tokio::time::timeout(args.timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                let (cause, hint) = connect_failure(&e, tls);
                return Err(unreachable(cause, hint));
            }
            Err(_) => {
                let cause = format!(
                    "no answer within {}",
                    humantime::format_duration(args.timeout)
                );
                return Err(unreachable(cause, NETWORK_HINT));
            }
        };
        Ok(Admin {
            endpoint: args.endpoint.clone(),
            channel,
            token,
            timeout: args.timeout,
            tls,
        })
    }

    pub fn cluster(&self) -> ClusterAdminClient<AdminService> {
        ClusterAdminClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(mxfleet_proto::MAX_MESSAGE_BYTES)
    }

    pub fn queue(&self) -> QueueAdminClient<AdminService> {
        QueueAdminClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(mxfleet_proto::MAX_MESSAGE_BYTES)
    }

    /// A request that tells the server our deadline (`grpc-timeout`), so it can give up
    /// when we do.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// A unary call, bounded by `--timeout`.
    pub async fn call<T>(
        &self,
        rpc: Rpc,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.rpc_error(rpc, status)),
            Err(_) => Err(self.timed_out(rpc)),
        }
    }

    /// Opens a server stream: only the opening is bounded by `--timeout`.
    pub async fn open<T>(
        &self,
        rpc: Rpc,
        call: impl Future<Output = Result<Response<Streaming<T>>, Status>>,
    ) -> Result<Streaming<T>, CliError> {
        self.call(rpc, call).await
    }

    /// The next message of a stream; `idle` bounds the wait when set.
    pub async fn next<T>(
        &self,
        rpc: Rpc,
        stream: &mut Streaming<T>,
        idle: Option<Duration>,
    ) -> Result<Option<T>, CliError> {
        let message = match idle {
            Some(limit) => tokio::time::timeout(limit, stream.message())
                .await
                .map_err(|_| self.timed_out(rpc))?,
            None => stream.message().await,
        };
        message.map_err(|status| self.rpc_error(rpc, status))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn rpc_error(&self, rpc: Rpc, status: Status) -> CliError {
        if is_deadline(&status) {
            return self.timed_out(rpc);
        }
        // A status with a source was made on our side of the connection (the node went
        // away, or the port does not speak gRPC); the server's own statuses have none.
        if let Some(source) = std::error::Error::source(&status) {
            let (cause, hint) = connect_failure(source, self.tls);
            return CliError::Unreachable {
                endpoint: self.endpoint.clone(),
                cause,
                hint,
            };
        }
        CliError::Rpc {
            endpoint: self.endpoint.clone(),
            rpc,
            status,
            token_sent: self.token.0.is_some(),
        }
    }

    fn timed_out(&self, rpc: Rpc) -> CliError {
        CliError::Timeout {
            endpoint: self.endpoint.clone(),
            rpc,
            after: self.timeout,
        }
    }
}

/// Whether the endpoint asks for TLS; refuses anything but `http://` or `https://` with
/// a host.
pub fn endpoint_is_tls(endpoint: &str) -> Result<bool, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "--endpoint {endpoint:?}: {why}; write it like {DEFAULT_ENDPOINT} or \
             https://mx1.example.net:7402 (or set MXFLEET_ENDPOINT)"
        ))
    };
    let uri: Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    match uri.scheme_str() {
        Some("http") => Ok(false),
        Some("https") => Ok(true),
        Some(other) => Err(bad(&format!(
            "the scheme must be http or https, not {other}"
        ))),
        None => Err(bad("no http:// or https://")),
    }
}

/// The `authorization` value: a token file (flag or MXFLEET_TOKEN_FILE) wins over
/// MXFLEET_TOKEN; neither means no header (a client certificate may authenticate).
fn bearer_value(
    token_file: Option<&Path>,
    env_token: Option<OsString>,
) -> Result<Option<MetadataValue<Ascii>>, CliError> {
    let (token, source) = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?;
            (text, format!("the token file {}", path.display()))
        }
        None => match env_token {
            Some(value) if !value.is_empty() => {
                let text = value
                    .into_string()
                    .map_err(|_| CliError::Usage("MXFLEET_TOKEN is not valid UTF-8".to_owned()))?;
                (text, "MXFLEET_TOKEN".to_owned())
            }
            _ => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!("{source} is empty")));
    }
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
        CliError::Usage(format!(
            "{source} holds characters a token cannot have (only printable ASCII)"
        ))
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The TLS settings for an https endpoint; `None` for http.
fn tls_config(args: &ClientArgs, tls: bool) -> Result<Option<ClientTlsConfig>, CliError> {
    let client_pair = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(CliError::Usage(
                "--client-cert and --client-key go together: give both or neither".to_owned(),
            ));
        }
    };
    if !tls {
        if args.ca_cert.is_some() || client_pair.is_some() {
            return Err(CliError::Usage(format!(
                "--ca-cert, --client-cert and --client-key need an https:// endpoint, and \
                 --endpoint is {}",
                args.endpoint
            )));
        }
        return Ok(None);
    }
    let Some(ca_cert) = &args.ca_cert else {
        return Err(CliError::Usage(format!(
            "{} is https: give the CA that signed the node's admin certificate with --ca-cert \
             FILE (or MXFLEET_CA_CERT); for a publicly signed certificate, the system bundle \
             (e.g. /etc/ssl/certs/ca-certificates.crt)",
            args.endpoint
        )));
    };
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read_flag_file("--ca-cert", ca_cert)?))
        .timeout(args.timeout);
    if let Some((cert, key)) = client_pair {
        config = config.identity(Identity::from_pem(
            read_flag_file("--client-cert", cert)?,
            read_flag_file("--client-key", key)?,
        ));
    }
    Ok(Some(config))
}

fn read_flag_file(flag: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        assert!(!endpoint_is_tls("http://127.0.0.1:7402").unwrap());
        assert!(endpoint_is_tls("https://mx1.example.net:7402").unwrap());
        for bad in ["127.0.0.1:7402", "ftp://x:1", "http://", "not a url"] {
            let error = endpoint_is_tls(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}");
            assert!(error.to_string().contains("MXFLEET_ENDPOINT"), "{error}");
        }
    }

    #[test]
    fn the_token_file_wins_over_the_variable_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file-0123456789\n").unwrap();
        let value = bearer_value(Some(&file), Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer from-file-0123456789");
        assert!(value.is_sensitive());
        let value = bearer_value(None, Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer from-env");
        assert!(bearer_value(None, Some("".into())).unwrap().is_none());
        assert!(bearer_value(None, None).unwrap().is_none());
    }

    #[test]
    fn unusable_tokens_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        let missing = dir.path().join("missing");
        for error in [
            bearer_value(Some(&empty), None).unwrap_err(),
            bearer_value(Some(&missing), None).unwrap_err(),
            bearer_value(None, Some("line\nbreak".into())).unwrap_err(),
        ] {
            assert_eq!(error.exit_code(), 2, "{error}");
        }
    }

    fn args(endpoint: &str) -> ClientArgs {
        ClientArgs {
            endpoint: endpoint.into(),
            token_file: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            timeout: Duration::from_secs(30),
            json: false,
        }
    }

    #[test]
    fn tls_flags_must_match_the_scheme() {
        let https = args("https://mx1.example.net:7402");
        let error = tls_config(&https, true).unwrap_err();
        assert!(error.to_string().contains("--ca-cert"), "{error}");
        let mut http = args(DEFAULT_ENDPOINT);
        http.ca_cert = Some("/etc/mxfleet/ca.pem".into());
        assert_eq!(tls_config(&http, false).unwrap_err().exit_code(), 2);
        let mut half = args("https://mx1.example.net:7402");
        half.ca_cert = Some("/etc/mxfleet/ca.pem".into());
        half.client_cert = Some("/etc/mxfleet/client.pem".into());
        let error = tls_config(&half, true).unwrap_err();
        assert!(error.to_string().contains("go together"), "{error}");
        assert!(
            tls_config(&args(DEFAULT_ENDPOINT), false)
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_refused_connection_exits_69_and_says_what_to_do() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let Err(error) = Admin::connect(&args(&endpoint), None).await else {
            panic!("connected to a closed port");
        };
        assert_eq!(error.exit_code(), 69);
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("cannot reach {endpoint}: connection refused;")),
            "{text}"
        );
        assert!(
            text.contains("use --endpoint or MXFLEET_ENDPOINT"),
            "{text}"
        );
    }
}
