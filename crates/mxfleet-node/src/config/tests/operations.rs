//! `[admin]`, `[metrics]` and `[log]`: off by default, tokens and permissions, TLS
//! rules for a listener reachable from the network, and each mistake with its key path.

use super::*;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn with(tables: &str) -> String {
    format!("{MINIMAL}\n{tables}\n")
}

#[test]
fn admin_metrics_and_json_logs_are_off_unless_configured() {
    let config = accepted(MINIMAL);
    assert!(config.admin.is_none());
    assert!(config.metrics_listen.is_none());
    assert_eq!(config.log_format, LogFormat::Text);
}

#[test]
fn a_loopback_admin_listener_with_a_hashed_token() {
    let config = accepted(&with(&format!(
        r#"
[admin]
listen = "127.0.0.1:7402"
[[admin.tokens]]
name = "ops"
secret_sha256 = "{SHA}"
permissions = ["view", "queue", "read-body"]

[metrics]
listen = "127.0.0.1:9425"

[log]
format = "json"
"#
    )));
    let admin = config.admin.expect("admin configured");
    assert_eq!(admin.listen.to_string(), "127.0.0.1:7402");
    assert!(admin.tls.is_none());
    assert_eq!(admin.tokens.len(), 1);
    assert_eq!(admin.tokens[0].name, "ops");
    // SHA-256 of "test".
    assert!(admin.tokens[0].secret == TokenSecret::Sha256(TokenSecret::digest_of("test")));
    assert_eq!(
        admin.tokens[0]
            .permissions
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![
            AdminPermission::View,
            AdminPermission::Queue,
            AdminPermission::ReadBody
        ]
    );
    assert_eq!(config.metrics_listen.unwrap().to_string(), "127.0.0.1:9425");
    assert_eq!(config.log_format, LogFormat::Json);
}

#[test]
fn a_token_file_is_read_and_only_its_digest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
    let text = with(&format!(
        "[admin]\nlisten = \"127.0.0.1:7402\"\n[[admin.tokens]]\nname = \"ops\"\nsecret_file = \"{}\"\npermissions = [\"view\"]\n",
        file.display()
    ));
    let config = parse(&text, ORIGIN).expect("valid");
    let token = &config.admin.unwrap().tokens[0];
    assert!(token.secret == TokenSecret::Sha256(TokenSecret::digest_of("0123456789abcdef0123")));

    std::fs::write(&file, "short\n").unwrap();
    let errors = parse(&text, ORIGIN).unwrap_err();
    assert!(
        message_for(&errors, "admin.tokens[0].secret_file").contains("shorter than 16"),
        "{errors}"
    );
}

#[test]
fn a_network_admin_listener_needs_tls_or_an_explicit_plaintext() {
    let token = format!(
        "[[admin.tokens]]\nname = \"ops\"\nsecret_sha256 = \"{SHA}\"\npermissions = [\"view\"]\n"
    );
    let errors = rejected(&with(&format!(
        "[admin]\nlisten = \"0.0.0.0:7402\"\n{token}"
    )));
    assert!(
        message_for(&errors, "admin").contains("in clear"),
        "{errors}"
    );
    accepted(&with(&format!(
        "[admin]\nlisten = \"0.0.0.0:7402\"\nplaintext = true\n{token}"
    )));
    let config = accepted(&with(&format!(
        "[admin]\nlisten = \"0.0.0.0:7402\"\ntls_cert = \"/etc/mxfleet/admin.crt\"\ntls_key = \"/etc/mxfleet/admin.key\"\n{token}"
    )));
    assert!(config.admin.unwrap().tls.is_some());
}

#[test]
fn client_certificates_alone_may_authenticate() {
    let config = accepted(&with(
        r#"
[admin]
listen = "10.0.0.5:7402"
tls_cert = "/etc/mxfleet/admin.crt"
tls_key = "/etc/mxfleet/admin.key"
tls_client_ca = "/etc/mxfleet/ops-ca.crt"
client_cert_permissions = ["view", "cluster"]
"#,
    ));
    let admin = config.admin.unwrap();
    assert!(admin.tokens.is_empty());
    assert!(admin.tls.unwrap().client_ca.is_some());
    assert!(
        admin
            .client_cert_permissions
            .contains(&AdminPermission::Cluster)
    );
}

#[test]
fn admin_mistakes_are_reported_with_their_key_paths() {
    let errors = rejected(&with(&format!(
        r#"
[admin]
listen = "127.0.0.1:7402"
[[admin.tokens]]
name = "ops"
secret_sha256 = "{SHA}"
permissions = ["view", "sudo"]
[[admin.tokens]]
secret_sha256 = "not hex"
permissions = ["view"]
[[admin.tokens]]
name = "ci"

[log]
format = "xml"
"#
    )));
    assert!(message_for(&errors, "admin.tokens[0].permissions").contains("\"sudo\""));
    assert!(message_for(&errors, "admin.tokens[1].name").contains("required"));
    assert!(message_for(&errors, "admin.tokens[1].secret_sha256").contains("64 hex"));
    assert!(message_for(&errors, "admin.tokens[2]").contains("secret_file"));
    assert!(message_for(&errors, "admin.tokens[2].permissions").contains("required"));
    assert!(message_for(&errors, "log.format").contains("\"xml\""));

    let no_auth = rejected(&with("[admin]\nlisten = \"127.0.0.1:7402\"\n"));
    assert!(message_for(&no_auth, "admin.tokens").contains("no way to authenticate"));
    let no_listen = rejected(&with(&format!(
        "[[admin.tokens]]\nname = \"ops\"\nsecret_sha256 = \"{SHA}\"\npermissions = [\"view\"]\n"
    )));
    assert!(message_for(&no_listen, "admin.listen").contains("required"));
    let bad_metrics = rejected(&with("[metrics]\nlisten = \"localhost\"\n"));
    assert!(message_for(&bad_metrics, "metrics.listen").contains("IP:port"));
}
