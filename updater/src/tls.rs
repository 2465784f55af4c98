//! Why a TLS handshake failed, in the words an operator acts on (pure: reads an error chain).
//! These failures do not go away by themselves, so they are not retried: a fleet whose CA
//! bundle broke must see that at once, not as "network unreachable" after minutes of backoff.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

/// A TLS failure that retrying will not fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted CA.
    UnknownCa,
    /// The server's certificate has expired (or the device's clock is ahead).
    Expired,
    /// The server's certificate is not valid yet (or the device's clock is behind).
    NotYetValid,
    /// The server's certificate is for another name.
    NameMismatch,
    /// The server refused this device's client certificate (or wanted one and got none).
    ClientCertRefused,
    /// Another certificate or handshake problem.
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFailure::UnknownCa => "the server's certificate is not issued by a trusted CA: check network.ca_file or the mirror's ca (a CA bundle that lacks the repository's CA), or the system trust store",
            TlsFailure::Expired => "the server's certificate has expired: renew it on the server, or check this device's clock",
            TlsFailure::NotYetValid => "the server's certificate is not valid yet: check this device's clock (RTC, NTP)",
            TlsFailure::NameMismatch => "the server's certificate is for another name: check the mirror URL's host against the certificate",
            TlsFailure::ClientCertRefused => "the server refused this device's client certificate (or required one and got none): check the mirror's client_cert and client_key, and that the server trusts their CA",
            TlsFailure::Other(why) => why,
        })
    }
}

/// The TLS failure in `e`'s chain of causes, if any.
pub fn classify(e: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(failure) = rustls_error(err).map(from_rustls) {
            return Some(failure);
        }
        next = err.source();
    }
    None
}

/// A rustls error, directly or inside `io::Error`s (hyper wraps it twice; an `io::Error`'s
/// `source()` skips its payload, so the payloads are opened here).
fn rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut err = err;
    loop {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        err = err.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn from_rustls(e: &rustls::Error) -> TlsFailure {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsFailure::UnknownCa,
            C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotYetValid,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
            other => TlsFailure::Other(format!("the server's certificate is unusable: {other:?}")),
        },
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::HandshakeFailure
            | AlertDescription::AccessDenied,
        ) => TlsFailure::ClientCertRefused,
        other => TlsFailure::Other(format!("the TLS handshake failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As hyper hands it over: an `io::Error` in an `io::Error`.
    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn each_certificate_error_is_named() {
        let cases = [
            (CertificateError::UnknownIssuer, TlsFailure::UnknownCa),
            (CertificateError::Expired, TlsFailure::Expired),
            (CertificateError::NotValidYet, TlsFailure::NotYetValid),
            (CertificateError::NotValidForName, TlsFailure::NameMismatch),
        ];
        for (cert, expected) in cases {
            let io = wrapped(rustls::Error::InvalidCertificate(cert));
            assert_eq!(classify(&io), Some(expected));
        }
        let alert = wrapped(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(classify(&alert), Some(TlsFailure::ClientCertRefused));
    }

    #[test]
    fn errors_without_tls_in_them_are_not_tls_failures() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), None);
    }
}
