//! `rtmfp://host[:port]/app[?query]` URLs.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use thiserror::Error;

/// Port RTMFP servers listen on unless told otherwise (Flash's default, as RTMP).
pub const DEFAULT_PORT: u16 = 1935;

/// A parsed server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmfpUrl {
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// Path without its leading `/` (the Flash `app`), without the query.
    pub app: String,
    /// The query after `?`, if any (without the `?`).
    pub query: Option<String>,
    /// The URL as given (minus any fragment): Flash's `tcUrl` and EPD.
    pub original: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("URL must start with rtmfp:// (got {0:?})")]
    Scheme(String),
    #[error("URL has no host")]
    EmptyHost,
    #[error("bad IPv6 literal {0:?} (write it as rtmfp://[2001:db8::1]:1935/app)")]
    BadIpv6(String),
    #[error("bad port {0:?} (1-65535)")]
    BadPort(String),
    #[error("user names and tokens in the URL are not supported")]
    UserInfo,
    #[error("bad character {0:?} in host")]
    BadHost(char),
    #[error(
        "no stream name: write rtmfp://host/app/STREAM, rtmfp://host/app#STREAM or use --stream"
    )]
    NoStream,
}

impl RtmfpUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let original = s.split('#').next().unwrap_or(s).to_owned();
        let (scheme, rest) = original
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(original.clone()))?;
        if !scheme.eq_ignore_ascii_case("rtmfp") {
            return Err(UrlError::Scheme(scheme.to_owned()));
        }
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (path_query, None),
        };
        Ok(Self {
            host,
            port,
            app: path.strip_prefix('/').unwrap_or(path).to_owned(),
            query,
            original,
        })
    }

    /// The host as an IP literal, if it is one (no resolution needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// A stream on a server: the NetConnection URL and the stream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUrl {
    /// The server URL without the stream (its `original` is the `tcUrl`).
    pub server: RtmfpUrl,
    /// The stream name, with any `?query` it carries (spec 04 §7.1).
    pub stream: String,
}

impl StreamUrl {
    /// Where the stream name comes from, first match wins:
    /// * `stream` (the `--stream` option), for apps whose names contain
    ///   slashes: the whole path is the app;
    /// * a `#name` fragment (tcconn/tcpublish's form): the whole path is the app;
    /// * the last path segment, as ffmpeg and librtmfp write
    ///   `rtmfp://host[:port]/app/stream`; a query then belongs to the stream.
    pub fn parse(s: &str, stream: Option<&str>) -> Result<Self, UrlError> {
        let server = RtmfpUrl::parse(s)?;
        if let Some(n) = stream.filter(|n| !n.is_empty()) {
            return Ok(Self {
                server,
                stream: n.to_owned(),
            });
        }
        if let Some((_, frag)) = s.trim().split_once('#')
            && !frag.is_empty()
        {
            return Ok(Self {
                server,
                stream: frag.to_owned(),
            });
        }
        let (app, name) = server.app.rsplit_once('/').ok_or(UrlError::NoStream)?;
        if name.is_empty() {
            return Err(UrlError::NoStream);
        }
        let stream = match &server.query {
            Some(q) => format!("{name}?{q}"),
            None => name.to_owned(),
        };
        // The tcUrl is the URL up to the app: cut the "/stream?query" tail.
        let tail = server.original.len()
            - name.len()
            - 1
            - server.query.as_ref().map_or(0, |q| q.len() + 1);
        let original = server.original[..tail].to_owned();
        Ok(Self {
            server: RtmfpUrl {
                app: app.to_owned(),
                query: None,
                original,
                ..server
            },
            stream,
        })
    }
}

impl fmt::Display for RtmfpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (lit, after) = rest
            .split_once(']')
            .ok_or_else(|| UrlError::BadIpv6(authority.to_owned()))?;
        if lit.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::BadIpv6(lit.to_owned()));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::BadPort(p.to_owned()))?,
            ),
        };
        (lit, port)
    } else {
        if authority.matches(':').count() > 1 {
            // An unbracketed IPv6 literal: the port would be ambiguous.
            return Err(UrlError::BadIpv6(authority.to_owned()));
        }
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if !authority.starts_with('[')
        && let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(UrlError::BadHost(c));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(UrlError::BadPort(p.to_owned())),
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u = RtmfpUrl::parse("rtmfp://127.0.0.1/live").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str()),
            ("127.0.0.1", 1935, "live")
        );
        assert_eq!(u.query, None);
        assert_eq!(u.original, "rtmfp://127.0.0.1/live");

        let u = RtmfpUrl::parse("RTMFP://example.net:19350/app/inst?token=x#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("example.net", 19350));
        assert_eq!(u.app, "app/inst");
        assert_eq!(u.query.as_deref(), Some("token=x"));
        assert_eq!(u.original, "RTMFP://example.net:19350/app/inst?token=x");

        let u = RtmfpUrl::parse("rtmfp://[::1]:19350/live").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 19350));
        assert_eq!(u.ip(), Some("::1".parse().unwrap()));

        let u = RtmfpUrl::parse("rtmfp://[2001:db8::1]").unwrap();
        assert_eq!((u.port, u.app.as_str()), (1935, ""));

        let u = RtmfpUrl::parse("rtmfp://host?x=1").unwrap();
        assert_eq!((u.app.as_str(), u.query.as_deref()), ("", Some("x=1")));
    }

    #[test]
    fn rejects_bad_urls_clearly() {
        let e = |s| RtmfpUrl::parse(s).unwrap_err();
        assert_eq!(e("http://x/app"), UrlError::Scheme("http".into()));
        assert!(matches!(e("127.0.0.1/live"), UrlError::Scheme(_)));
        assert_eq!(e("rtmfp:///live"), UrlError::EmptyHost);
        assert_eq!(e("rtmfp://h:0/a"), UrlError::BadPort("0".into()));
        assert_eq!(e("rtmfp://h:70000/a"), UrlError::BadPort("70000".into()));
        assert_eq!(e("rtmfp://h:/a"), UrlError::BadPort("".into()));
        assert!(matches!(e("rtmfp://::1/a"), UrlError::BadIpv6(_)));
        assert!(matches!(e("rtmfp://[::g]/a"), UrlError::BadIpv6(_)));
        assert!(matches!(e("rtmfp://[::1/a"), UrlError::BadIpv6(_)));
        assert!(matches!(e("rtmfp://[::1]x/a"), UrlError::BadPort(_)));
        assert_eq!(e("rtmfp://u:t@h/a"), UrlError::UserInfo);
        assert_eq!(e("rtmfp://h st/a"), UrlError::BadHost(' '));
    }

    #[test]
    fn stream_urls_in_every_form() {
        let s = StreamUrl::parse("rtmfp://127.0.0.1:19350/live/cam", None).unwrap();
        assert_eq!((s.server.app.as_str(), s.stream.as_str()), ("live", "cam"));
        assert_eq!(s.server.original, "rtmfp://127.0.0.1:19350/live");
        assert_eq!(s.server.port, 19350);

        let s = StreamUrl::parse("rtmfp://h/live/cam?asis", None).unwrap();
        assert_eq!(
            (s.server.app.as_str(), s.stream.as_str()),
            ("live", "cam?asis")
        );
        assert_eq!(
            (s.server.original.as_str(), s.server.query.as_deref()),
            ("rtmfp://h/live", None)
        );

        let s = StreamUrl::parse("rtmfp://h/live/12345#Bunny?priority=3", None).unwrap();
        assert_eq!(
            (s.server.app.as_str(), s.stream.as_str()),
            ("live/12345", "Bunny?priority=3")
        );
        assert_eq!(s.server.original, "rtmfp://h/live/12345");

        let s = StreamUrl::parse("rtmfp://h/a/b/c", Some("x")).unwrap();
        assert_eq!((s.server.app.as_str(), s.stream.as_str()), ("a/b/c", "x"));

        let s = StreamUrl::parse("rtmfp://[::1]/app/inst/s", None).unwrap();
        assert_eq!(
            (s.server.app.as_str(), s.stream.as_str()),
            ("app/inst", "s")
        );
        assert_eq!(s.server.original, "rtmfp://[::1]/app/inst");

        for bad in [
            "rtmfp://h/live",
            "rtmfp://h",
            "rtmfp://h/live/",
            "rtmfp://h/live#",
        ] {
            assert_eq!(
                StreamUrl::parse(bad, None).unwrap_err(),
                UrlError::NoStream,
                "{bad}"
            );
        }
    }
}
