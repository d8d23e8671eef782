//! Keeps credentials out of logs and messages: URLs lose their user info.

/// The URL with its user info replaced by `***`. Everything up to the last `@` goes, so a password
/// holding an unescaped `/` or `@` is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    match url.find("://") {
        Some(scheme_end) if scheme_end < at => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => format!("***{}", &url[at..]),
    }
}

#[cfg(test)]
mod tests;
