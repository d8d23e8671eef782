//! Service A (`cpe_locate_service`): configures one device synchronously. Here the device is
//! simulated: the answer comes after `delay`, waited asynchronously so thousands cost little.

use super::health::{self, Probe, Readiness};
use super::openapi;
use super::routes::{Lookup, Route, Table};
use super::{
    error, no_route, reply, request_error, HttpRequest, Routes, DEVICE_PATH, EQUIPMENT_NOT_FOUND, PROVISIONING_FAILED,
};
use async_trait::async_trait;
use cpe_actors::{ConfigRequest, EquipmentId};
use serde_json::json;
use std::sync::LazyLock;
use std::time::Duration;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

pub struct ServiceA {
    pub delay: Duration,
    /// Fraction of configurations that answer 500 (fault injection for tests).
    pub fail_rate: f64,
    pub readiness: Readiness,
}

/// What answers a row of Service A's table.
enum Handler {
    Health(Probe),
    OpenApi,
    Configure,
}

/// Service A's routes; `/metrics` is added around them (see `observe.rs`).
fn table() -> &'static Table<Handler> {
    static TABLE: LazyLock<Table<Handler>> = LazyLock::new(|| {
        let health = health::ROUTES.map(|(path, probe)| Route::any(path, Handler::Health(probe)));
        let mut routes = Vec::from(health);
        routes.push(Route::on(Method::GET, openapi::PATH, Handler::OpenApi));
        routes.push(Route::on(Method::POST, DEVICE_PATH, Handler::Configure));
        Table::new(routes)
    });
    &TABLE
}

/// Every route of the table, as (method, pattern); None: every method.
pub fn routes() -> Vec<(Option<Method>, &'static str)> {
    table().served()
}

#[async_trait]
impl Routes for ServiceA {
    async fn handle(&self, request: HttpRequest) -> Response {
        let (handler, params) = match table().lookup(&request) {
            Lookup::Found(handler, params) => (handler, params),
            Lookup::WrongMethod(refused) => return refused,
            Lookup::NoPath => return no_route(&request),
        };
        match handler {
            Handler::Health(probe) => health::answer(*probe, "cpe_locate_service", &self.readiness),
            Handler::OpenApi => openapi::serve(openapi::Service::A),
            Handler::Configure => {
                let Some(Ok(equipment)) = params.get("id").map(EquipmentId::parse) else {
                    return error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND);
                };
                self.configure(equipment, &request).await
            }
        }
    }
}

impl ServiceA {
    async fn configure(&self, equipment: EquipmentId, request: &HttpRequest) -> Response {
        let config = match ConfigRequest::from_json(&request.body) {
            Ok(config) => config,
            Err(rejection) => return request_error(rejection),
        };
        tracing::debug!(%equipment, parameters = ?config.parameters, "configuring device");
        tokio::time::sleep(self.delay).await;
        if self.fail_rate > 0.0 && fastrand::f64() < self.fail_rate {
            tracing::info!(%equipment, "simulated device failure");
            return error(StatusCode::INTERNAL_SERVER_ERROR, PROVISIONING_FAILED);
        }
        tracing::debug!(%equipment, "device configured");
        reply(StatusCode::OK, json!({"code": 200, "message": "success"}))
    }
}
