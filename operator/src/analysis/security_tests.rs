//! Where analysis requests go and what they carry: credentials from Secrets,
//! TLS settings, the allow-list, redirects, and no response body in status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlctl_crds::http::{
    Authorization, BasicAuth, CaSource, ConfigMapKeyRef, HeaderValueSource, HttpHeader,
    SecretKeyRef, TlsConfig,
};
use mlctl_crds::rankingmodel::MetricProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Prober;
use super::guard::{AllowEntry, AllowList};
use super::provider::tests::{
    Server, interleave, prober, prober_with, prometheus, vars, vector, web,
};
use super::secrets::{Kind, StaticSource};

fn secret_ref(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

fn with_prometheus(
    mut provider: MetricProvider,
    edit: impl FnOnce(&mut mlctl_crds::rankingmodel::PrometheusProvider),
) -> MetricProvider {
    edit(provider.prometheus.as_mut().unwrap());
    provider
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn prometheus_bearer_and_basic_credentials_come_from_secrets() {
    let server = Server::start(Some(200), &vector(&["1"])).await;
    // The trailing newline `kubectl create secret --from-file` leaves is dropped.
    let secrets = StaticSource::default()
        .with(Kind::Secret, "shop", "prom", "token", b"t0ken\n")
        .with(Kind::Secret, "shop", "prom", "user", b"alice")
        .with(Kind::Secret, "shop", "prom", "password", b"s3cret");
    let prober = prober_with(secrets);

    let bearer = with_prometheus(prometheus(&server.url(), None), |p| {
        p.authorization = Some(Authorization {
            type_: None,
            credentials: secret_ref("prom", "token"),
        });
    });
    assert_eq!(prober.measure(&bearer, &vars()).await, Ok(Some(1.0)));
    assert_eq!(
        header_of(&server.request(0), "authorization").as_deref(),
        Some("Bearer t0ken")
    );

    let basic = with_prometheus(prometheus(&server.url(), None), |p| {
        p.basic_auth = Some(BasicAuth {
            username: secret_ref("prom", "user"),
            password: secret_ref("prom", "password"),
        });
    });
    assert_eq!(prober.measure(&basic, &vars()).await, Ok(Some(1.0)));
    assert_eq!(
        header_of(&server.request(1), "authorization").as_deref(),
        Some("Basic YWxpY2U6czNjcmV0")
    );

    // The interleave step's Prometheus takes the same settings.
    let mut il = interleave(&server.url());
    il.authorization = Some(Authorization {
        type_: Some("Token".into()),
        credentials: secret_ref("prom", "token"),
    });
    prober
        .prometheus_by_label(&il, "q", "winner", &vars())
        .await
        .unwrap();
    assert_eq!(
        header_of(&server.request(2), "authorization").as_deref(),
        Some("Token t0ken")
    );
}

#[tokio::test]
async fn web_header_values_come_from_secrets_and_missing_ones_are_named() {
    let server = Server::start(Some(200), r#"{"v": 2}"#).await;
    let secrets = StaticSource::default().with(Kind::Secret, "shop", "api", "key", b"k-123");
    let prober = prober_with(secrets);
    let mut provider = web(&server.url(), "$.v");
    let w = provider.web.as_mut().unwrap();
    w.headers.push(HttpHeader {
        name: "X-Api-Key".into(),
        value: None,
        value_from: Some(HeaderValueSource {
            secret_key_ref: secret_ref("api", "key"),
        }),
    });
    assert_eq!(prober.measure(&provider, &vars()).await, Ok(Some(2.0)));
    let head = server.request(0);
    assert_eq!(header_of(&head, "x-api-key").as_deref(), Some("k-123"));
    assert_eq!(header_of(&head, "x-scope").as_deref(), Some("ns shop"));

    let mut missing_key = provider.clone();
    missing_key.web.as_mut().unwrap().headers[1]
        .value_from
        .as_mut()
        .unwrap()
        .secret_key_ref = secret_ref("api", "token");
    let e = prober.measure(&missing_key, &vars()).await.unwrap_err();
    assert_eq!(
        e,
        r#"web.headers[1].valueFrom.secretKeyRef: Secret "api" has no key "token""#
    );

    let mut missing_secret = provider.clone();
    missing_secret.web.as_mut().unwrap().headers[1]
        .value_from
        .as_mut()
        .unwrap()
        .secret_key_ref = secret_ref("other", "key");
    let e = prober.measure(&missing_secret, &vars()).await.unwrap_err();
    assert_eq!(
        e,
        r#"web.headers[1].valueFrom.secretKeyRef: Secret "other" not found in namespace "shop""#
    );
    // The Secret is read in the model's namespace, not any other.
    let mut elsewhere = vars();
    elsewhere.namespace = "other-team".into();
    let e = prober.measure(&provider, &elsewhere).await.unwrap_err();
    assert!(
        e.ends_with(r#"Secret "api" not found in namespace "other-team""#),
        "{e}"
    );
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "no request without its credentials"
    );

    let prom = with_prometheus(prometheus(&server.url(), None), |p| {
        p.basic_auth = Some(BasicAuth {
            username: secret_ref("api", "key"),
            password: secret_ref("api", "password"),
        });
    });
    let e = prober.measure(&prom, &vars()).await.unwrap_err();
    assert_eq!(
        e,
        r#"prometheus.basicAuth.password: Secret "api" has no key "password""#
    );
}

#[tokio::test]
async fn metadata_and_link_local_addresses_are_refused_even_when_everything_is_allowed() {
    let everything = vec![
        AllowEntry::Network("0.0.0.0/0".parse().unwrap()),
        AllowEntry::Network("::/0".parse().unwrap()),
    ];
    let prober = Prober::new(
        AllowList::new(everything, "cluster.local"),
        Duration::from_secs(30),
        Arc::new(StaticSource::default()),
    );
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]:9090/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let started = Instant::now();
        let e = prober.measure(&web(url, "$.x"), &vars()).await.unwrap_err();
        assert!(
            e.contains("link-local or a cloud metadata address"),
            "{url}: {e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused before connecting"
        );
    }
}

#[tokio::test]
async fn hosts_outside_the_allow_list_are_refused() {
    let server = Server::start(Some(200), &vector(&["1"])).await;
    let in_cluster_only = Prober::new(
        AllowList::new(vec![AllowEntry::InCluster], "cluster.local"),
        Duration::from_secs(30),
        Arc::new(StaticSource::default()),
    );
    let e = in_cluster_only
        .measure(&prometheus(&server.url(), None), &vars())
        .await
        .unwrap_err();
    assert!(
        e.ends_with("address 127.0.0.1 is not in the operator's allow-list (--analysis-allow)"),
        "{e}"
    );
    let port = server.url().rsplit(':').next().unwrap().to_string();
    let e = in_cluster_only
        .measure(
            &prometheus(&format!("http://localhost:{port}"), None),
            &vars(),
        )
        .await
        .unwrap_err();
    assert!(
        e.contains(r#"host "localhost" is not in the operator's allow-list"#),
        "{e}"
    );
    assert!(server.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = Server::start(Some(200), r#"{"v": 1}"#).await;
    let redirect = Server::start_with(
        Some(302),
        &format!("Location: {}/steal\r\n", elsewhere.url()),
        "",
    )
    .await;
    let e = prober()
        .measure(&web(&redirect.url(), "$.v"), &vars())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        format!(
            "web {}: HTTP 302 Found (redirects are not followed; use the final URL)",
            redirect.url()
        )
    );
    assert!(
        elsewhere.requests.lock().unwrap().is_empty(),
        "the redirect target got nothing"
    );
}

#[tokio::test]
async fn response_bodies_never_reach_the_error_message() {
    const SECRET: &str = "TOPSECRET-aws-key";
    let bodies = [
        (503, SECRET.to_string()),
        (200, format!("<html>{SECRET}</html>")),
        (200, format!(r#"{{"v": "{SECRET}"}}"#)),
        (
            200,
            format!(r#"{{"status":"error","errorType":"{SECRET}","error":"{SECRET}"}}"#),
        ),
        (
            200,
            format!(r#"{{"status":"success","data":{{"resultType":"{SECRET}","result":[]}}}}"#),
        ),
        (
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"value":[1,"{SECRET}"]}}]}}}}"#
            ),
        ),
    ];
    for (status, body) in bodies {
        let server = Server::start(Some(status), &body).await;
        for provider in [web(&server.url(), "$.v"), prometheus(&server.url(), None)] {
            let e = prober().measure(&provider, &vars()).await.unwrap_err();
            assert!(!e.contains("TOPSECRET"), "{body} -> {e}");
        }
        let e = prober()
            .prometheus_by_label(&interleave(&server.url()), "q", "winner", &vars())
            .await
            .unwrap_err();
        assert!(!e.contains("TOPSECRET"), "{body} -> {e}");
    }
}

#[tokio::test]
async fn timeouts_are_clamped_to_the_operators_maximum() {
    let server = Server::start(None, "").await;
    let prober = Prober::new(
        AllowList::new(
            vec![AllowEntry::Network("127.0.0.1/32".parse().unwrap())],
            "cluster.local",
        ),
        Duration::from_millis(300),
        Arc::new(StaticSource::default()),
    );
    let started = Instant::now();
    let e = prober
        .measure(&prometheus(&server.url(), Some("60s")), &vars())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        format!("prometheus {}: no answer within 300ms", server.url())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        prober.timeout("web.timeout", None),
        Ok(Duration::from_millis(300))
    );
}

/// A throwaway CA and a server certificate it signs for `names`.
struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mlctl test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

/// An HTTPS server on 127.0.0.1 answering every request with `body`.
async fn tls_server(pki: &Pki, body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(pki.cert_der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, task)
}

fn tls_web(url: &str, tls: Option<TlsConfig>) -> MetricProvider {
    let mut provider = web(url, "$.v");
    provider.web.as_mut().unwrap().tls_config = tls;
    provider
}

#[tokio::test]
async fn tls_with_a_ca_from_a_secret_or_config_map_and_a_server_name() {
    let by_ip = pki(&["127.0.0.1"]);
    let (url, _server) = tls_server(&by_ip, r#"{"v": 7}"#).await;
    let secrets = StaticSource::default().with(
        Kind::Secret,
        "shop",
        "prom-ca",
        "ca.crt",
        by_ip.ca_pem.as_bytes(),
    );
    let prober = prober_with(secrets);
    let ca_secret = TlsConfig {
        ca: Some(CaSource {
            secret: Some(secret_ref("prom-ca", "ca.crt")),
            config_map: None,
        }),
        ..TlsConfig::default()
    };
    assert_eq!(
        prober
            .measure(&tls_web(&url, Some(ca_secret.clone())), &vars())
            .await,
        Ok(Some(7.0))
    );
    // Without the CA the certificate is not trusted.
    let e = prober
        .measure(&tls_web(&url, None), &vars())
        .await
        .unwrap_err();
    assert!(
        e.contains("cannot connect") && e.to_lowercase().contains("certificate"),
        "{e}"
    );

    // A certificate for a name: checked against serverName, CA from a ConfigMap.
    let by_name = pki(&["prometheus.monitoring.svc"]);
    let (url, _server) = tls_server(&by_name, r#"{"v": 8}"#).await;
    let secrets = StaticSource::default().with(
        Kind::ConfigMap,
        "shop",
        "bundle",
        "ca.pem",
        by_name.ca_pem.as_bytes(),
    );
    let prober = prober_with(secrets);
    let ca_config_map = CaSource {
        secret: None,
        config_map: Some(ConfigMapKeyRef {
            name: "bundle".into(),
            key: "ca.pem".into(),
        }),
    };
    let named = TlsConfig {
        ca: Some(ca_config_map.clone()),
        server_name: Some("prometheus.monitoring.svc".into()),
        insecure_skip_verify: false,
    };
    assert_eq!(
        prober.measure(&tls_web(&url, Some(named)), &vars()).await,
        Ok(Some(8.0))
    );
    let unnamed = TlsConfig {
        ca: Some(ca_config_map),
        ..TlsConfig::default()
    };
    let e = prober
        .measure(&tls_web(&url, Some(unnamed)), &vars())
        .await
        .unwrap_err();
    assert!(
        e.contains("cannot connect"),
        "the address's host is not in the certificate: {e}"
    );

    let skip = TlsConfig {
        insecure_skip_verify: true,
        ..TlsConfig::default()
    };
    assert_eq!(
        prober.measure(&tls_web(&url, Some(skip)), &vars()).await,
        Ok(Some(8.0))
    );

    // The Prometheus provider takes the same tlsConfig; a missing CA Secret is named.
    let missing = with_prometheus(prometheus(&url, None), |p| p.tls_config = Some(ca_secret));
    let e = prober.measure(&missing, &vars()).await.unwrap_err();
    assert_eq!(
        e,
        r#"prometheus.tlsConfig.ca.secret: Secret "prom-ca" not found in namespace "shop""#
    );
}
