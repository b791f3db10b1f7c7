//! Reading the parameters of the gateway's own endpoints: query strings and
//! bounded `application/x-www-form-urlencoded` bodies.

use crate::body::BoxError;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use std::time::Duration;

/// Largest callback / logout form body accepted.
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;

/// Longest time a form body may take to arrive.
const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One value per parameter name; a repeated name is an error (RFC 6749 §3.1).
pub(crate) fn single_params(raw: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, ()> {
    let mut out = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(raw) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                return Err(());
            }
            out[i] = Some(v.into_owned());
        }
    }
    Ok(out)
}

/// The query parameter `name`, when it appears exactly once.
pub(crate) fn query_param(req: &Parts, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    single_params(q.as_bytes(), &[name]).ok()?.pop().flatten()
}

/// Reads a form body (POST callbacks, back-channel logout), bounded in
/// size and time.
pub(crate) async fn read_form<B>(parts: &Parts, body: B) -> Result<Bytes, StatusCode>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let collected = tokio::time::timeout(
        FORM_READ_TIMEOUT,
        Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await
    .map_err(|_| StatusCode::REQUEST_TIMEOUT)?
    .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    Ok(collected.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_params_refuses_repeated_names_and_ignores_others() {
        let got = single_params(b"code=a&state=b&x=1&x=2", &["code", "state"]).unwrap();
        assert_eq!(got, vec![Some("a".into()), Some("b".into())]);
        assert!(single_params(b"code=a&code=b", &["code"]).is_err());
        assert_eq!(single_params(b"", &["code"]).unwrap(), vec![None]);
    }

    #[tokio::test]
    async fn read_form_needs_the_form_media_type_and_bounds_the_size() {
        let req = http::Request::post("/cb")
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let ok = read_form(&parts, http_body_util::Full::new(Bytes::from("a=1"))).await;
        assert_eq!(ok.unwrap(), Bytes::from("a=1"));
        let big = Bytes::from(vec![b'a'; MAX_FORM_BYTES + 1]);
        let too_big = read_form(&parts, http_body_util::Full::new(big)).await;
        assert_eq!(too_big.unwrap_err(), StatusCode::PAYLOAD_TOO_LARGE);
        let json = http::Request::post("/cb")
            .header(CONTENT_TYPE, "application/json")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let refused = read_form(&json, http_body_util::Full::new(Bytes::from("{}"))).await;
        assert_eq!(refused.unwrap_err(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
