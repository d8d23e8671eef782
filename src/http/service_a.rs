//! Service A (`cpe_locate_service`): configures one device synchronously. Here the device is
//! simulated: the answer comes after `delay`, waited asynchronously so thousands cost little.

use super::health::{self, Readiness};
use super::openapi;
use super::{
    error, method_not_allowed, no_route, reply, request_error, HttpRequest, Routes, CPE_PREFIX, EQUIPMENT_NOT_FOUND,
    PROVISIONING_FAILED,
};
use async_trait::async_trait;
use cpe_actors::{ConfigRequest, EquipmentId};
use serde_json::json;
use std::time::Duration;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

pub struct ServiceA {
    pub delay: Duration,
    /// Fraction of configurations that answer 500 (fault injection for tests).
    pub fail_rate: f64,
    pub readiness: Readiness,
}

#[async_trait]
impl Routes for ServiceA {
    async fn handle(&self, request: HttpRequest) -> Response {
        if let Some(answer) = health::answer(&request, "cpe_locate_service", &self.readiness) {
            return answer;
        }
        if let Some(answer) = openapi::answer(&request, openapi::Service::A) {
            return answer;
        }
        let segments = request.segments();
        match segments.as_slice() {
            [a, b, c, d, id] if [*a, *b, *c, *d] == CPE_PREFIX => {
                if request.method != Method::POST {
                    return method_not_allowed(&request, "POST");
                }
                let Ok(equipment) = EquipmentId::parse(id) else {
                    return error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND);
                };
                self.configure(equipment, &request).await
            }
            _ => no_route(&request),
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
