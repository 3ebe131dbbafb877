//! The HTTP clients of the analysis requests: one per TLS setting (CA bundle,
//! server name, verification off), built once and reused. Every client
//! resolves names through the allow-list's [`Resolver`], follows no redirects
//! (a redirect could carry a Secret-sourced header to another host) and uses
//! no proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::guard::{AllowList, Resolver};

/// Distinct TLS settings kept; past this the cache starts over.
const CLIENTS_MAX: usize = 128;

/// A `tlsConfig` with its CA bundle read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    /// PEM bundle added to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Name checked in the certificate instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
}

impl Tls {
    /// The `tlsConfig` at `field` (e.g. `webhook.tlsConfig`), its CA bundle
    /// read from the Secret or ConfigMap it names in namespace `ns`.
    pub async fn read(
        source: &dyn super::secrets::Source,
        ns: &str,
        config: Option<&mlctl_crds::http::TlsConfig>,
        field: &str,
    ) -> Result<Tls, String> {
        use super::secrets;
        let Some(config) = config else {
            return Ok(Tls::default());
        };
        let ca_pem = match &config.ca {
            None => None,
            Some(ca) => Some(match (&ca.secret, &ca.config_map) {
                (Some(r), _) => {
                    secrets::secret(source, ns, r, &format!("{field}.ca.secret")).await?
                }
                (None, Some(r)) => {
                    let field = format!("{field}.ca.configMap");
                    let kind = secrets::Kind::ConfigMap;
                    secrets::value(source, kind, ns, &r.name, &r.key, &field).await?
                }
                (None, None) => {
                    return Err(format!("{field}.ca sets neither secret nor configMap"));
                }
            }),
        };
        Ok(Tls {
            ca_pem,
            server_name: config.server_name.clone(),
            insecure_skip_verify: config.insecure_skip_verify,
        })
    }
}

/// The clients, by TLS setting.
pub struct Clients {
    resolver: Arc<Resolver>,
    cache: Mutex<HashMap<Tls, reqwest::Client>>,
}

impl Clients {
    /// Clients that connect only where `allow` permits.
    pub fn new(allow: Arc<AllowList>) -> Self {
        // Err only when a provider is already installed, which is what we want
        // (kube's client uses the same one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Clients {
            resolver: Arc::new(Resolver::new(allow)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `tls` (the default one for `Tls::default()`).
    pub fn get(&self, tls: &Tls) -> Result<reqwest::Client, String> {
        if let Some(client) = self.cache.lock().ok().and_then(|c| c.get(tls).cloned()) {
            return Ok(client);
        }
        let client = self.build(tls)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CLIENTS_MAX {
                cache.clear();
            }
            cache.insert(tls.clone(), client.clone());
        }
        Ok(client)
    }

    fn build(&self, tls: &Tls) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("mlctl-operator/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(self.resolver.clone());
        if *tls != Tls::default() {
            builder = builder.tls_backend_preconfigured(rustls_config(tls)?);
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}

fn rustls_config(tls: &Tls) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAny(provider.clone()))
    } else {
        let roots = match &tls.ca_pem {
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "tlsConfig.ca: not a PEM certificate bundle".to_string())?;
                if certs.is_empty() {
                    return Err("tlsConfig.ca: the PEM bundle holds no certificate".into());
                }
                certs
            }
            None => Vec::new(),
        };
        let platform =
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| format!("tlsConfig.ca: {e}"))?;
        match &tls.server_name {
            Some(name) => Arc::new(ExpectName {
                inner: platform,
                name: ServerName::try_from(name.clone())
                    .map_err(|_| format!("tlsConfig.serverName {name:?} is not a DNS name"))?,
            }),
            None => Arc::new(platform),
        }
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Verifies the certificate for `name` rather than the URL's host
/// (`tlsConfig.serverName`).
#[derive(Debug)]
struct ExpectName {
    inner: rustls_platform_verifier::Verifier,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecureSkipVerify`: any certificate, for any name (the handshake's
/// signatures are still checked, so the peer holds the certificate's key).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
