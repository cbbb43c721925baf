//! The one rule for every URL a token is sent to besides the API itself: the log-cache and
//! network-policy-server links of the root document (bearer token) and the login server of the
//! cf config file (refresh token, client secret).
//!
//! A link must be `http` or `https`, and when the API is `https` the link must be `https` too: an
//! https API that hands out a plain-http link would otherwise get the token sent in clear text
//! to whoever is on the path. Hosts are not compared: Cloud Foundry's links name other hosts
//! (`log-cache.<system domain>`, `uaa.<system domain>`) by design.
//!
//! Depends on: url. Must not: send anything.

use url::Url;

/// Whether a token may be sent to `link` by a client of the API at `api`. `Err` holds why not,
/// worded to follow the link (e.g. `"'http://x' is plain http while the API is https: ..."`).
pub(crate) fn check_token_link(api: &Url, link: &Url) -> Result<(), String> {
    if !matches!(link.scheme(), "http" | "https") || link.host_str().is_none() {
        return Err(format!("'{link}' is not an http or https URL"));
    }
    if api.scheme() == "https" && link.scheme() != "https" {
        return Err(format!(
            "'{link}' is not an https URL while the API is: the token is not sent over plain http"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(api: &str, link: &str) -> Result<(), String> {
        check_token_link(&Url::parse(api).unwrap(), &Url::parse(link).unwrap())
    }

    #[test]
    fn an_https_api_only_hands_its_token_to_https_links() {
        assert_eq!(
            check("https://api.example.com", "https://uaa.example.com"),
            Ok(())
        );
        let err = check("https://api.example.com", "http://uaa.example.com").unwrap_err();
        assert!(err.contains("not an https URL"), "{err}");
        // A plain-http API (the local simulator) may use plain-http links.
        assert_eq!(check("http://127.0.0.1:8080", "http://127.0.0.1:9"), Ok(()));
        assert_eq!(
            check("http://api.example.com", "https://uaa.example.com"),
            Ok(())
        );
        assert!(check("https://api.example.com", "ftp://uaa.example.com").is_err());
        assert!(check("http://api.example.com", "file:///etc/passwd").is_err());
    }
}
