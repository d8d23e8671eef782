//! Value parsers of the options: each refuses a bad value naming the rule, and those of values that
//! may hold a password never quote the value.

use super::StoreKind;
use crate::secret::Secret;

/// A value parser for values that hold a password: on error, clap's own message would quote the
/// value; this one names the option and the rule only.
#[derive(Clone)]
pub(super) struct QuietParser<T>(pub(super) fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for QuietParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let option = arg.map_or_else(|| "the value".to_owned(), |arg| format!("'{arg}'"));
        let refuse = |rule: String| {
            let message = format!("invalid value for {option} (not shown, it may hold a password): {rule}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("it is not UTF-8".into()))?;
        (self.0)(text).map_err(refuse)
    }
}

pub(super) fn parse_store(raw: &str) -> Result<StoreKind, String> {
    match raw {
        "memory" => Ok(StoreKind::Memory),
        "file" => Ok(StoreKind::File),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The parser's own message may quote the URL, password included: name the rule instead.
            url.parse::<postgres::Config>().map_err(|_| {
                "the PostgreSQL URL is not valid: it must look like postgres://user:password@host:5432/database"
                    .to_string()
            })?;
            Ok(StoreKind::Postgres(url.to_owned()))
        }
        _ => Err("must be `memory`, `file`, or a URL like postgres://user:password@host:5432/database".into()),
    }
}

pub(super) fn parse_https_url(raw: &str) -> Result<String, String> {
    // The message shows the value without its user info: it may hold a password.
    let shown = crate::redact::redact_url(raw);
    let rest = raw
        .strip_prefix("https://")
        .ok_or_else(|| format!("`{shown}` must start with https:// (Service A speaks HTTPS only)"))?;
    if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("`{shown}` has no host"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

pub(super) fn parse_amqp_url(raw: &str) -> Result<Secret<String>, String> {
    if raw.starts_with("amqps://") {
        return Err("amqps:// is not supported by this build; use amqp:// on a trusted network".into());
    }
    if !raw.starts_with("amqp://") || raw.len() <= "amqp://".len() {
        return Err("must look like amqp://user:password@host:5672/%2f".into());
    }
    Ok(Secret::new(raw.to_owned()))
}

/// Any text parses; its rule (length, characters) is checked in `Config::validate`.
pub(super) fn parse_api_token(raw: &str) -> Result<Secret<String>, String> {
    Ok(Secret::new(raw.to_owned()))
}

pub(super) fn parse_database_url(raw: &str) -> Result<Secret<String>, String> {
    match parse_store(raw)? {
        StoreKind::Postgres(url) => Ok(Secret::new(url)),
        _ => Err("must be a URL like postgres://user:password@host:5432/database".into()),
    }
}

pub(super) fn parse_queue_name(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 200
        && !raw.starts_with("amq.")
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "`{raw}` is not a usable queue name: 1 to 200 of A-Z a-z 0-9 - _ . :, not starting with amq."
        ))
    }
}

/// A name or address Service B answers to, without a port: `cpe.example.net`, `10.0.0.5`, `::1`.
pub(super) fn parse_public_host(raw: &str) -> Result<String, String> {
    let name =
        !raw.is_empty() && raw.len() <= 253 && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    if name || raw.parse::<std::net::IpAddr>().is_ok() {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{raw}` is not a host name or address (letters, digits, - and ., or an IP address; no port)"
        ))
    }
}

pub(super) fn parse_fraction(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("`{raw}` must be a number from 0.0 to 1.0"))
}
