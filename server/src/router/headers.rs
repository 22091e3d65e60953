//! What the router changes on the way through (hop-by-hop headers out, `x-forwarded-*` and
//! `traceparent` in, the prefix stripped) and the answers it gives itself (404, 413, 502/504, 503)
//! as JSON bodies `{ "error", "detail", … }` like the rest of opsdeck's API.

use std::{borrow::Cow, net::IpAddr};

use app::model::traffic::{Route, Sticky};
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header, request::Parts, uri::PathAndQuery,
};
use http_body_util::{Either, Full};
use serde_json::json;

use super::proxy::ProxyBody;
use crate::{demo::trace::TraceContext, traffic::RoutingTable};

/// `traceparent`, as a header name made once (a `&str` key is parsed on every use).
pub const TRACEPARENT: HeaderName = HeaderName::from_static(crate::demo::trace::TRACEPARENT);

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The request's host without port: the Host header, or the authority of an absolute URI.
pub fn host(parts: &Parts) -> Option<Cow<'_, str>> {
    let raw = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| parts.uri.host())?;
    if let Some(plain) = plain_host(raw) {
        return Some(Cow::Borrowed(plain));
    }
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some(Cow::Owned(authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()))
}

/// The host of `raw` when it is a lowercase name or IPv4 address with an optional numeric port,
/// as most Host headers are: what parsing it as an authority and lower-casing it would give,
/// without copying it twice per request. Anything else takes the general path.
fn plain_host(raw: &str) -> Option<&str> {
    let (name, port) = raw.split_once(':').unwrap_or((raw, "0"));
    let name_is_plain = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let port_is_plain = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (name_is_plain && port_is_plain).then_some(name)
}

/// The sticky value of a request: the configured header, else the configured cookie.
pub fn sticky_value(headers: &HeaderMap, sticky: &Sticky) -> Option<Vec<u8>> {
    if let Some(name) = &sticky.header
        && let Some(value) = headers.get(name.as_str())
        && !value.is_empty()
    {
        return Some(value.as_bytes().to_vec());
    }
    let wanted = sticky.cookie.as_deref()?;
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == wanted && !value.is_empty())
        .map(|(_, value)| value.as_bytes().to_vec())
}

/// The path and query to send upstream: with the route's prefix removed when it says so.
pub fn upstream_path_and_query(uri: &Uri, route: &Route) -> PathAndQuery {
    if !(route.strip_prefix && route.path_prefix.is_some())
        && let Some(unchanged) = uri.path_and_query()
    {
        return unchanged.clone();
    }
    let text = upstream_path_and_query_text(uri, route);
    PathAndQuery::from_maybe_shared(Bytes::from(text)).unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

fn upstream_path_and_query_text(uri: &Uri, route: &Route) -> String {
    let path = uri.path();
    let path = match (&route.path_prefix, route.strip_prefix) {
        (Some(prefix), true) => {
            let rest = &path[prefix.trim_end_matches('/').len().min(path.len())..];
            if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") }
        }
        _ => path.to_owned(),
    };
    match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The client at the other end of a connection, as its requests' `x-forwarded-for` names it
/// (the header value made once per connection, not per request).
#[derive(Clone)]
pub struct Client {
    ip: IpAddr,
    forwarded_for: Option<HeaderValue>,
}

impl Client {
    pub fn new(ip: IpAddr) -> Self {
        Self { ip, forwarded_for: HeaderValue::from_str(&ip.to_string()).ok() }
    }
}

/// What every attempt's headers are made from, worked out once per request: the client's headers
/// minus hop-by-hop ones (and those its `Connection` header names), plus `x-forwarded-for/proto/
/// host` and the router's `traceparent`.
pub struct Outgoing {
    client: HeaderMap,
    /// Named by the client's `Connection` header: hop-by-hop too.
    named: Vec<HeaderName>,
    forwarded_for: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
}

impl Outgoing {
    pub fn new(client_headers: HeaderMap, client: &Client, trace: &TraceContext) -> Self {
        let named = client_headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        let forwarded_for = match client_headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => HeaderValue::from_maybe_shared(Bytes::from(format!("{earlier}, {}", client.ip))).ok(),
            None => client.forwarded_for.clone(),
        };
        Self {
            forwarded_host: client_headers.get(header::HOST).cloned(),
            client: client_headers,
            named,
            forwarded_for,
            traceparent: HeaderValue::from_maybe_shared(Bytes::from(trace.outgoing_header())).ok(),
        }
    }

    /// One attempt's headers, in a map made afresh: fewer lookups than removing every hop-by-hop
    /// name from the client's map, and no clone of it per attempt. A request without `Host` gets
    /// the instance's address.
    pub fn headers(&self, authority: &str) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.client.len() + 5);
        for (name, value) in &self.client {
            if !self.replaced_or_dropped(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(value) = &self.forwarded_for {
            headers.insert(X_FORWARDED_FOR, value.clone());
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(value) = &self.forwarded_host {
            headers.insert(X_FORWARDED_HOST, value.clone());
        }
        if let Some(value) = &self.traceparent {
            headers.insert(TRACEPARENT, value.clone());
        }
        if !headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority)
        {
            headers.insert(header::HOST, host);
        }
        headers
    }

    fn replaced_or_dropped(&self, name: &HeaderName) -> bool {
        // `Upgrade` is kept out too: the router speaks plain request/response HTTP.
        HOP_BY_HOP.contains(name)
            || name == header::UPGRADE
            || self.named.contains(name)
            || name == X_FORWARDED_PROTO
            || (name == X_FORWARDED_FOR && self.forwarded_for.is_some())
            || (name == X_FORWARDED_HOST && self.forwarded_host.is_some())
            || (name == TRACEPARENT && self.traceparent.is_some())
    }
}

/// One attempt's request: origin-form URI, as an HTTP/1.1 connection to the instance sends it.
pub fn build_request(
    method: &Method,
    path_and_query: &PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = Uri::from(path_and_query.clone());
    *request.headers_mut() = headers;
    request
}

/// The instance's response with hop-by-hop headers removed.
pub fn clean_response(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    // Most responses have none: looking at their few names is cheaper than eight removals.
    if response.headers().keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            response.headers_mut().remove(name);
        }
    }
    response
}

/// The router's own answer: `body` as JSON.
fn answer(status: StatusCode, body: serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 404: no service's route matches; says what was asked and what can be routed.
pub fn not_found(host: Option<&str>, path: &str, table: &RoutingTable) -> Response<ProxyBody> {
    let mut services: Vec<serde_json::Value> = table
        .services
        .values()
        .map(|routes| {
            let route = &routes.policy.route;
            json!({
                "service": routes.policy.service,
                "host": route.host.clone().unwrap_or_else(|| if route.path_prefix.is_some() { "*".to_owned() } else { format!("{0} or {0}.*", routes.policy.service) }),
                "path_prefix": route.path_prefix.clone().unwrap_or_else(|| "/".to_owned()),
            })
        })
        .collect();
    services.sort_by(|a, b| a["service"].as_str().cmp(&b["service"].as_str()));
    let names: Vec<&str> = services.iter().filter_map(|s| s["service"].as_str()).collect();
    answer(
        StatusCode::NOT_FOUND,
        json!({
            "error": "no service routes this request",
            "detail": format!(
                "host {:?} and path {path:?} match no service's route; routable services: {}",
                host.unwrap_or(""),
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ),
            "host": host,
            "path": path,
            "services": services,
        }),
    )
}

/// 503: the service exists but none of its instances can take the call.
pub fn no_upstream(service: &str, state: &str) -> Response<ProxyBody> {
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({
            "error": "no healthy upstream",
            "detail": format!("service {service} has no healthy instance whose circuit breaker admits the call ({state})"),
            "service": service,
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 502 or 504: every attempt failed without an answer.
pub fn upstream_failed(service: &str, attempts: u32, timed_out: bool, reason: &str) -> Response<ProxyBody> {
    let status = if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
    answer(
        status,
        json!({
            "error": if timed_out { "upstream timed out" } else { "upstream failed" },
            "detail": format!("service {service}: {attempts} attempt(s) on distinct instances failed; the last: {reason}"),
            "service": service,
            "attempts": attempts,
        }),
    )
}

/// 413: the body is larger than the router holds for replay.
pub fn too_large(limit: usize, reason: &str) -> Response<ProxyBody> {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({
            "error": "request body too large",
            "detail": format!("the router holds bodies up to {limit} bytes (--body-limit) to replay them on retry: {reason}"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("a request").into_parts().0
    }

    #[test]
    fn the_host_loses_its_port_and_case() {
        assert_eq!(host(&parts("/", &[("host", "Web.Example.org:8080")])).as_deref(), Some("web.example.org"));
        assert_eq!(host(&parts("/", &[("host", "web.example.org:8080")])).as_deref(), Some("web.example.org"));
        assert_eq!(host(&parts("/", &[("host", "web")])).as_deref(), Some("web"));
        assert_eq!(host(&parts("/", &[("host", "[::1]:80")])).as_deref(), Some("::1"));
        assert_eq!(host(&parts("/", &[("host", "web:")])).as_deref(), Some("web"));
        assert_eq!(host(&parts("/", &[("host", "a:1:2")])), None);
        assert_eq!(host(&parts("http://Shop.example.org/a", &[])).as_deref(), Some("shop.example.org"));
        assert_eq!(host(&parts("/", &[])), None);
    }

    #[test]
    fn the_prefix_is_stripped_only_when_the_route_says_so() {
        let route = Route { host: None, path_prefix: Some("/shop/".to_owned()), strip_prefix: true };
        let uri: Uri = "/shop/cart?x=1".parse().expect("uri");
        assert_eq!(upstream_path_and_query(&uri, &route), "/cart?x=1");
        assert_eq!(upstream_path_and_query(&"/shop".parse().expect("uri"), &route), "/");
        let kept = Route { strip_prefix: false, ..route };
        assert_eq!(upstream_path_and_query(&uri, &kept), "/shop/cart?x=1");
        let absolute: Uri = "http://web.example.org/a?b=1".parse().expect("uri");
        assert_eq!(upstream_path_and_query(&absolute, &kept), "/a?b=1");
    }

    #[test]
    fn attempts_get_the_clients_headers_without_hop_by_hop_ones_and_with_forwarded_ones() {
        let client = parts(
            "/",
            &[
                ("host", "shop.example.org"),
                ("connection", "keep-alive, x-drop-me"),
                ("x-drop-me", "1"),
                ("keep-alive", "timeout=5"),
                ("accept", "a"),
                ("accept", "b"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "https"),
                ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ],
        );
        let trace = TraceContext::new_root();
        let outgoing = Outgoing::new(client.headers, &Client::new([127, 0, 0, 1].into()), &trace);
        let headers = outgoing.headers("10.1.1.1:8080");
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(value("host"), Some("shop.example.org"));
        assert_eq!(headers.get_all("accept").iter().count(), 2, "repeated headers stay repeated");
        assert_eq!((value("connection"), value("keep-alive"), value("x-drop-me")), (None, None, None));
        assert_eq!(value("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
        assert_eq!(value("x-forwarded-proto"), Some("http"));
        assert_eq!(value("x-forwarded-host"), Some("shop.example.org"));
        assert_eq!(value("traceparent"), Some(trace.outgoing_header().as_str()));
        assert_eq!(headers.len(), 7);

        let bare = Outgoing::new(HeaderMap::new(), &Client::new([127, 0, 0, 1].into()), &trace);
        let headers = bare.headers("10.1.1.1:8080");
        assert_eq!(headers.get("host").and_then(|v| v.to_str().ok()), Some("10.1.1.1:8080"), "no Host: the instance's");
        assert_eq!(headers.get("x-forwarded-host"), None);
    }

    #[test]
    fn the_sticky_value_comes_from_the_header_then_the_cookie() {
        let sticky = Sticky { header: Some("x-user".to_owned()), cookie: Some("uid".to_owned()) };
        let both = parts("/", &[("x-user", "alice"), ("cookie", "a=1; uid=bob")]);
        assert_eq!(sticky_value(&both.headers, &sticky).as_deref(), Some(&b"alice"[..]));
        let cookie = parts("/", &[("cookie", "a=1; uid=bob")]);
        assert_eq!(sticky_value(&cookie.headers, &sticky).as_deref(), Some(&b"bob"[..]));
        assert_eq!(sticky_value(&parts("/", &[]).headers, &sticky), None);
    }
}
