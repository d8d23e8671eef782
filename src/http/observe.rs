//! Request metrics and the `/metrics` route: [`Observed`] wraps a service's routes, and [`wrap`]
//! times every answer of the warp filter, so 413s and caught panics are counted too.

use super::routes::{Lookup, Route, Table};
use super::{error, HttpRequest, Routes};
use crate::metrics::{Metrics, CONTENT_TYPE};
use async_trait::async_trait;
use std::sync::{Arc, LazyLock};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

/// Where one service's requests are counted.
#[derive(Clone)]
pub struct HttpObserver {
    pub metrics: Arc<Metrics>,
    /// The `service` label: `service_a` or `service_b`.
    pub service: &'static str,
}

/// A service's routes plus `GET /metrics`. The route asks for no token, even with `--api-token`:
/// scrapers usually carry none, and nothing in it names a device, a task or a secret.
pub struct Observed {
    pub inner: Arc<dyn Routes>,
    pub observer: HttpObserver,
}

/// The route [`Observed`] adds to a service's own table.
fn table() -> &'static Table<()> {
    static TABLE: LazyLock<Table<()>> = LazyLock::new(|| Table::new(vec![Route::on(Method::GET, "/metrics", ())]));
    &TABLE
}

/// The added route, as (method, pattern).
pub fn routes() -> Vec<(Option<Method>, &'static str)> {
    table().served()
}

#[async_trait]
impl Routes for Observed {
    fn answers_to(&self, authority: Option<&str>) -> bool {
        self.inner.answers_to(authority)
    }

    async fn handle(&self, request: HttpRequest) -> Response {
        match table().lookup(&request) {
            Lookup::Found(..) => {}
            Lookup::WrongMethod(refused) => return refused,
            Lookup::NoPath => return self.inner.handle(request).await,
        }
        // A scrape reads the store's tallies: off the async threads, like any file read.
        let metrics = self.observer.metrics.clone();
        match tokio::task::spawn_blocking(move || metrics.render()).await {
            Ok(text) => {
                let mut response = Response::new(text.into());
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                response
            }
            Err(join_error) => {
                tracing::error!(%join_error, "metrics could not be rendered");
                error(StatusCode::INTERNAL_SERVER_ERROR, "Metrics could not be rendered")
            }
        }
    }

    fn observer(&self) -> Option<HttpObserver> {
        Some(self.observer.clone())
    }
}

/// Counts and times each answer of `served` when there is an observer; the label values come
/// from the route template, never from the raw path.
pub fn wrap<F>(served: F, observer: Option<HttpObserver>) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let Some(observer) = observer else {
        return served.boxed();
    };
    let record = warp::log::custom(move |info: warp::log::Info<'_>| {
        observer.metrics.request(
            observer.service,
            info.method(),
            info.path(),
            info.status(),
            info.elapsed(),
        );
    });
    served.with(record).map(Reply::into_response).boxed()
}
