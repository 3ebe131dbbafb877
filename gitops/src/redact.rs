//! Credentials embedded in URLs (`https://user:token@host/…`, as CI systems
//! hand out for `--git`) never reach the output: every message that can
//! carry a remote URL — git command lines, git's stderr, errors — goes
//! through [`url_credentials`] before it is printed.

/// What replaces the user-info of a URL.
const HIDDEN: &str = "***";

/// `text` with the user-info of every `scheme://user-info@host` replaced by
/// `***`, wherever the URL sits in the text (quoted, mid-sentence, several).
pub fn url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query or fragment, or where the URL
        // ends in running text; its last `@` ends the user-info.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '\'' | '"' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(user_info_end) => {
                out.push_str(HIDDEN);
                rest = &after[user_info_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The secrets of a remote's user-info (as typed and percent-decoded), for
/// text that quotes them outside a URL. Only long enough ones: replacing
/// every `git` or `ci` in a message would garble it, and tokens are long.
pub fn secrets_of(remote: &str) -> Vec<String> {
    let Some((_, after)) = remote.split_once("://") else {
        return Vec::new();
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let Some(user_info_end) = after[..end].rfind('@') else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    for part in after[..user_info_end].split(':') {
        for form in [part.to_string(), percent_decoded(part)] {
            if form.len() >= 6 && !secrets.contains(&form) {
                secrets.push(form);
            }
        }
    }
    secrets
}

/// `text` with URL credentials and every one of `secrets` hidden.
pub fn with_secrets(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(url_credentials(text), |text, secret| {
        text.replace(secret.as_str(), HIDDEN)
    })
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_info_of_every_url_is_hidden() {
        for (text, want) in [
            (
                "`git clone -- https://x-access-token:ghs_abc@github.com/acme/gitops.git /tmp/r` failed",
                "`git clone -- https://***@github.com/acme/gitops.git /tmp/r` failed",
            ),
            (
                "fatal: unable to access 'https://user:tok@host:8443/r.git/': 403",
                "fatal: unable to access 'https://***@host:8443/r.git/': 403",
            ),
            ("To https://tok@host", "To https://***@host"),
            (
                "a http://u:p@a/ and ssh://git:pw@b:22/x",
                "a http://***@a/ and ssh://***@b:22/x",
            ),
            // A password with an `@` in it (not percent-encoded): the last one counts.
            ("https://u:p@ss@host/x", "https://***@host/x"),
            // No user-info, or an `@` only in the path: unchanged.
            ("https://host/a@b", "https://host/a@b"),
            (
                "git@github.com:acme/gitops.git",
                "git@github.com:acme/gitops.git",
            ),
            ("no url here", "no url here"),
        ] {
            assert_eq!(url_credentials(text), want, "{text}");
        }
    }

    #[test]
    fn secrets_are_hidden_outside_urls_too() {
        let secrets = secrets_of("https://oauth2:glpat-s%2Fecret@gitlab.example.com/x.git");
        assert_eq!(secrets, ["oauth2", "glpat-s%2Fecret", "glpat-s/ecret"]);
        assert_eq!(
            with_secrets("bad credentials for glpat-s/ecret", &secrets),
            "bad credentials for ***"
        );
        assert!(secrets_of("https://git@host/x").is_empty());
        assert!(secrets_of("/srv/git/gitops.git").is_empty());
    }
}
