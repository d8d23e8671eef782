//! Known hosts only: Service B answers a request only when its `Host` (or `:authority`) names it,
//! so a page on a rebinding domain (a name of the attacker's that resolves to this machine) is
//! refused even where the certificate check is skipped. The names are `--public-host`, or by
//! default every name and address the served certificate is valid for and the listen address;
//! `localhost` and the loopback addresses always.

use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most hosts remembered as named by the certificate. Only names it covers are kept, so another
/// site's names cannot fill the memory; they are checked each time.
const REMEMBERED: usize = 64;

pub struct KnownHosts {
    /// `--public-host`: when given, exactly these (lower-case, without a port).
    listed: Vec<String>,
    /// The served certificate's leaf: a host it is valid for is known.
    certificate: Option<CertificateDer<'static>>,
    listen: IpAddr,
    /// Hosts the certificate names, so a request for them does not parse the certificate again.
    named: Mutex<HashSet<String>>,
}

impl KnownHosts {
    pub fn new(listed: &[String], certificate: Option<CertificateDer<'static>>, listen: IpAddr) -> Self {
        Self {
            listed: listed.iter().map(|host| host.to_ascii_lowercase()).collect(),
            certificate,
            listen,
            named: Mutex::default(),
        }
    }

    /// A request without a host (HTTP/1.0) names nothing and is answered, as before.
    pub fn knows(&self, authority: Option<&str>) -> bool {
        let Some(authority) = authority else {
            return true;
        };
        let host = host_of(authority);
        let address = host.trim_start_matches('[').trim_end_matches(']');
        // This machine's own names: a container healthcheck uses them, and a rebinding page cannot
        // (its requests name the attacker's domain).
        if host == "localhost" || address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        if !self.listed.is_empty() {
            return self.listed.iter().any(|listed| listed == address);
        }
        if address
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip == self.listen && !ip.is_unspecified())
        {
            return true;
        }
        if self.named.lock().expect("hosts lock").contains(address) {
            return true;
        }
        let known = self.certificate_names(address);
        let mut named = self.named.lock().expect("hosts lock");
        if known && named.len() < REMEMBERED {
            named.insert(address.to_owned());
        }
        known
    }

    fn certificate_names(&self, address: &str) -> bool {
        let (Some(certificate), Ok(name)) = (&self.certificate, ServerName::try_from(address)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(certificate)
            .is_ok_and(|leaf| leaf.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// The host of `host[:port]` or `[v6]:port`, lower-case as the request gave it.
fn host_of(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> CertificateDer<'static> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let pair = rcgen::generate_simple_self_signed(names).unwrap();
        pair.cert.der().clone()
    }

    #[test]
    fn the_certificates_names_and_the_listen_address_are_known_and_nothing_else() {
        let hosts = KnownHosts::new(&[], Some(served()), "10.0.0.5".parse().unwrap());
        for known in [
            None,
            Some("localhost:8081"),
            Some("127.0.0.1:8081"),
            Some("[::1]:8081"),
            Some("10.0.0.5"),
            Some("localhost"),
        ] {
            assert!(hosts.knows(known), "{known:?}");
        }
        for unknown in [
            "evil.example:8081",
            "evil.example",
            "10.0.0.6:8081",
            "localhost.evil.example",
            "",
        ] {
            assert!(!hosts.knows(Some(unknown)), "{unknown}");
        }
        let anywhere = KnownHosts::new(&[], Some(served()), "0.0.0.0".parse().unwrap());
        assert!(
            !anywhere.knows(Some("0.0.0.0:8081")),
            "the unspecified address names no host"
        );
    }

    #[test]
    fn public_hosts_replace_the_defaults() {
        let hosts = KnownHosts::new(
            &["CPE.example.net".to_owned()],
            Some(served()),
            "127.0.0.1".parse().unwrap(),
        );
        assert!(hosts.knows(Some("cpe.example.net:443")));
        assert!(
            hosts.knows(Some("localhost:8081")),
            "loopback names always, for healthchecks"
        );
        let other = KnownHosts::new(
            &["cpe.example.net".to_owned()],
            Some(served()),
            "10.0.0.5".parse().unwrap(),
        );
        assert!(!other.knows(Some("10.0.0.5:8081")), "the listed names only");
    }
}
