//! [`ResponseFuture`] of the [`Oidc`](super::Oidc) service.

use crate::body::{BoxError, ResponseBody};
use crate::identity::Identity;
use crate::metrics::{AuthOutcome, Metrics, RouteKind};
use crate::telemetry::AccessNote;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pin_project! {
    /// Response future of [`Oidc`](super::Oidc): the inner service's
    /// future, a response made by the gateway, or an authentication step
    /// that had to wait. Records the request in the metrics when done.
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
        metrics: Arc<Metrics>,
        route: RouteKind,
        outcome: Option<AuthOutcome>,
        identity: Option<Arc<Identity>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Inner { #[pin] fut: F },
        Ready { resp: Option<Response<ResponseBody>> },
        Boxed { fut: BoxFuture<'static, Result<Response<ResponseBody>, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(crate) fn inner(fut: F, metrics: &Arc<Metrics>, route: RouteKind) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
            metrics: metrics.clone(),
            route,
            outcome: None,
            identity: None,
        }
    }

    pub(crate) fn ready(
        resp: Response<ResponseBody>,
        metrics: &Arc<Metrics>,
        route: RouteKind,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Ready { resp: Some(resp) },
            metrics: metrics.clone(),
            route,
            outcome: None,
            identity: None,
        }
    }

    pub(crate) fn boxed(
        fut: BoxFuture<'static, Result<Response<ResponseBody>, E>>,
        metrics: &Arc<Metrics>,
        route: RouteKind,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Boxed { fut },
            metrics: metrics.clone(),
            route,
            outcome: None,
            identity: None,
        }
    }
}

impl<F, E> ResponseFuture<F, E> {
    /// Notes the authentication outcome (and identity) for the access log.
    pub(crate) fn noted(mut self, outcome: AuthOutcome, identity: Option<&Arc<Identity>>) -> Self {
        self.outcome = Some(outcome);
        self.identity = identity.cloned();
        self
    }
}

impl<F, E, B> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = match this.kind.project() {
            KindProj::Inner { fut } => ready!(fut.poll(cx)).map(|r| r.map(crate::body::boxed)),
            KindProj::Ready { resp } => match resp.take() {
                Some(r) => Ok(r),
                None => return Poll::Pending,
            },
            KindProj::Boxed { fut } => ready!(fut.as_mut().poll(cx)),
        };
        if let Ok(resp) = &mut result {
            this.metrics
                .record_request(*this.route, resp.status().as_u16());
            // A note made on the way (an async step) is kept; the route is ours.
            match resp.extensions_mut().get_mut::<AccessNote>() {
                Some(note) => note.route = *this.route,
                None => {
                    resp.extensions_mut().insert(AccessNote {
                        route: *this.route,
                        outcome: *this.outcome,
                        identity: this.identity.take(),
                    });
                }
            }
        }
        Poll::Ready(result)
    }
}
