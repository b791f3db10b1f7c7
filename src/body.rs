//! The response body type shared by the gateway's services.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// Boxed error type used by bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response body of every service in the gateway: a boxed, streaming body.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Box any body whose error converts into [`BoxError`]. A body that is
/// already a [`ResponseBody`] is returned as it is, not boxed a second time.
pub fn boxed<B>(body: B) -> ResponseBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    if let Some(already) =
        (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<ResponseBody>>()
    {
        if let Some(body) = already.take() {
            return body;
        }
    }
    match slot {
        Some(body) => body.map_err(Into::into).boxed_unsync(),
        None => empty(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn boxed_keeps_the_content_of_boxed_and_other_bodies() {
        let twice = boxed(boxed(full("abc")));
        assert_eq!(twice.collect().await.unwrap().to_bytes(), "abc");
        let once = boxed(Full::new(Bytes::from_static(b"xyz")));
        assert_eq!(once.collect().await.unwrap().to_bytes(), "xyz");
    }
}
