//! Credentials: GITHUB_TOKEN / GH_TOKEN, or a GitHub App installation. Tokens go straight
//! into octocrab's secret type and are never formatted, printed or logged.

use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};

use crate::cli::{Connect, Credentials, TargetArgs, UsageError};

/// Longest wait for a TCP + TLS connection to GitHub.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn failed(message: String) -> Connect {
    Connect::Failed(message)
}

pub(crate) async fn client(
    args: &TargetArgs,
    credentials: &Credentials,
    owner: &str,
    repo: &str,
) -> Result<Octocrab, Connect> {
    // No request may hang the run: connecting is bounded by its own timeout,
    // each read and write of the connection by the request's; the API layer
    // bounds every request as a whole.
    let timeout = args.request_timeout();
    let mut builder = Octocrab::builder()
        .set_connect_timeout(Some(timeout.min(CONNECT_TIMEOUT)))
        .set_read_timeout(Some(timeout))
        .set_write_timeout(Some(timeout));
    if let Some(url) = &args.api_url {
        builder = builder.base_uri(url.trim_end_matches('/')).map_err(|_| {
            Connect::Usage(UsageError(format!("--api-url {url:?} is not a valid URL")))
        })?;
    }
    if let (Some(app_id), Some(key_path)) = (args.app_id, &args.app_key) {
        let pem = std::fs::read(key_path).map_err(|e| {
            failed(format!(
                "cannot read the App key {}: {e}",
                key_path.display()
            ))
        })?;
        let key = octocrab::EncodingKey::from_rsa_pem(&pem).map_err(|_| {
            failed(format!(
                "{} is not an RSA private key in PEM format (download it from the App's settings)",
                key_path.display()
            ))
        })?;
        let app = builder
            .app(AppId(app_id), key)
            .build()
            .map_err(|e| failed(format!("cannot build the GitHub client: {e}")))?;
        let installation = match args.installation_id {
            Some(id) => id,
            None => installation_for_repo(&app, owner, repo).await?,
        };
        return app.installation(InstallationId(installation)).map_err(|e| {
            failed(format!(
                "cannot act as App installation {installation}: {e}"
            ))
        });
    }
    let builder = match credentials.token() {
        Some(token) => builder.personal_token(token.to_string()),
        None if args.dry_run => {
            eprintln!(
                "warning: no GITHUB_TOKEN/GH_TOKEN; dry-run reads anonymously (public repositories only)"
            );
            builder
        }
        None => {
            return Err(Connect::Usage(UsageError(
                "no credentials: set GITHUB_TOKEN or GH_TOKEN, or pass --app-id and --app-key"
                    .into(),
            )));
        }
    };
    builder
        .build()
        .map_err(|e| failed(format!("cannot build the GitHub client: {e}")))
}

async fn installation_for_repo(app: &Octocrab, owner: &str, repo: &str) -> Result<u64, Connect> {
    let not_installed = || {
        failed(format!(
            "the GitHub App is not installed on {owner}/{repo} (or the key does not belong to \
             --app-id); install it or pass --installation-id"
        ))
    };
    let response = app
        ._get(format!("/repos/{owner}/{repo}/installation"))
        .await
        .map_err(|e| failed(format!("cannot reach GitHub: {e}")))?;
    if !response.status().is_success() {
        return Err(not_installed());
    }
    let body = app
        .body_to_string(response)
        .await
        .map_err(|e| failed(format!("cannot read GitHub's answer: {e}")))?;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
        .ok_or_else(not_installed)
}
