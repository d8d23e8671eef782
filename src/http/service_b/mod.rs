//! Service B (`config_status_service`): accepts a configuration task at once and reports its status.
//! This file holds its route table and the checks every task route takes; the create path, the
//! status route and the bearer token have their own files.

mod accountable;
mod create;
mod cross_site;
mod hosts;
mod status;
mod token;

pub use accountable::RefusalBudget;
pub use cross_site::{CROSS_SITE, NOT_JSON};
pub use hosts::KnownHosts;

use super::health::{self, Probe, Readiness};
use super::openapi;
use super::routes::{Lookup, Params, Route, Table};
use super::{audit, bulk, dashboard, tasks};
use super::{error, no_route, HttpRequest, Routes, DEVICE_PATH, EQUIPMENT_NOT_FOUND};
use crate::metrics::{Admission, Metrics};
use crate::tokens::{Holder, Scope, Tokens};
use async_trait::async_trait;
use cpe_actors::ports::TaskPublisher;
use cpe_actors::registry::RegistryHandle;
use cpe_actors::{AuditAction, EquipmentId};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

pub struct ServiceB {
    pub registry: RegistryHandle,
    pub publisher: Arc<dyn TaskPublisher>,
    pub readiness: Readiness,
    /// `--api-token` and `--tokens-file`: when any is set, every task route requires a token.
    pub tokens: Arc<Tokens>,
    /// Reads the tokens file again when it changes, for as long as Service B is served.
    pub _tokens_watch: Option<cpe_actors::task_guard::AbortOnDrop>,
    /// Counts creates and cancels.
    pub metrics: Arc<Metrics>,
    /// The `Host` values answered; others get 421.
    pub hosts: KnownHosts,
    /// Bounds how many refused writes a second reach the audit trail.
    pub refusals: RefusalBudget,
}

/// What answers a row of Service B's table.
enum Handler {
    Health(Probe),
    OpenApi,
    Asset(&'static dashboard::Asset),
    /// The dashboard's mode: writable, token required.
    Mode,
    /// A route over tasks: token, loopback for writes, then the equipment id come first.
    Tasks(TaskRoute),
}

/// The task routes, each checked the same way before it runs.
#[derive(Clone, Copy)]
enum TaskRoute {
    AllTasks,
    Bulk(bulk::Action),
    Create,
    DeviceTasks,
    Status,
    Cancel,
    Retry,
    Audit,
}

impl TaskRoute {
    /// Cancel, retry, the bulk actions and the audit trail: without a token configured, open to
    /// loopback peers only.
    fn is_loopback_only(self) -> bool {
        matches!(self, Self::Retry | Self::Bulk(_) | Self::Cancel | Self::Audit)
    }

    /// The scope a token needs here.
    fn needs(self) -> Scope {
        match self {
            Self::Audit => Scope::Admin,
            route if route.is_write() => Scope::Operate,
            _ => Scope::Read,
        }
    }

    /// Every POST and DELETE: refused from another site, and with a body that is not JSON.
    fn is_write(self) -> bool {
        matches!(self, Self::Create | Self::Retry | Self::Bulk(_) | Self::Cancel)
    }

    /// Routes that queue new tasks: refused with 503 while the process starts or stops.
    fn changes_tasks(self) -> bool {
        matches!(self, Self::Create | Self::Retry | Self::Bulk(bulk::Action::Retry))
    }
}

/// Service B's routes; `/metrics` is added around them (see `observe.rs`). A path's methods are
/// listed in `Allow` in this order.
fn table() -> &'static Table<Handler> {
    static TABLE: LazyLock<Table<Handler>> = LazyLock::new(|| {
        use Method as M;
        use TaskRoute::*;
        let health = health::ROUTES.map(|(path, probe)| Route::any(path, Handler::Health(probe)));
        let mut routes = Vec::from(health);
        routes.push(Route::on(M::GET, openapi::PATH, Handler::OpenApi));
        routes.extend(
            dashboard::ASSETS
                .iter()
                .map(|asset| Route::on(M::GET, asset.path, Handler::Asset(asset))),
        );
        routes.push(Route::on(M::GET, dashboard::MODE_PATH, Handler::Mode));
        let task = "/api/v1/equipment/cpe/{id}/task/{task}";
        for (method, pattern, route) in [
            (M::GET, "/api/v1/tasks", AllTasks),
            (M::GET, audit::PATH, Audit),
            (M::POST, "/api/v1/tasks/retry", Bulk(bulk::Action::Retry)),
            (M::POST, "/api/v1/tasks/cancel", Bulk(bulk::Action::Cancel)),
            (M::POST, DEVICE_PATH, Create),
            (M::GET, "/api/v1/equipment/cpe/{id}/tasks", DeviceTasks),
            (M::GET, task, Status),
            (M::DELETE, task, Cancel),
            (M::POST, "/api/v1/equipment/cpe/{id}/task/{task}/retry", Retry),
        ] {
            routes.push(Route::on(method, pattern, Handler::Tasks(route)));
        }
        Table::new(routes)
    });
    &TABLE
}

/// Every route of the table, as (method, pattern); None: every method.
pub fn routes() -> Vec<(Option<Method>, &'static str)> {
    table().served()
}

#[async_trait]
impl Routes for ServiceB {
    fn answers_to(&self, authority: Option<&str>) -> bool {
        self.hosts.knows(authority)
    }

    async fn handle(&self, request: HttpRequest) -> Response {
        let (handler, params) = match table().lookup(&request) {
            Lookup::Found(handler, params) => (handler, params),
            Lookup::WrongMethod(refused) => return refused,
            Lookup::NoPath => return no_route(&request),
        };
        match handler {
            Handler::Health(probe) => health::answer(*probe, "config_status_service", &self.readiness),
            Handler::OpenApi => openapi::serve(openapi::Service::B),
            Handler::Asset(asset) => dashboard::serve(asset),
            Handler::Mode => {
                // Answered without a token: the page asks it first, to learn whether it needs one.
                // Writable: a token whose scope covers writes, or no token set and a loopback peer.
                let required = self.tokens.required();
                let (writable, scope) = match self.authorize(&request, Scope::Read) {
                    Ok(Some(holder)) => (holder.scope >= Scope::Operate, Some(holder.scope)),
                    Ok(None) => (dashboard::may_write(required, request.peer), None),
                    Err(_) => (false, None),
                };
                dashboard::mode(writable, required, scope)
            }
            Handler::Tasks(TaskRoute::Status) => {
                // A status request may be held for a minute (`?wait=`): past the checks it keeps
                // the two ids and the query, and lets go of the headers and the rest.
                let (device, task) = match (self.admit(TaskRoute::Status, &request, &params), params.get("task")) {
                    (Err(refused), _) => return *refused,
                    (
                        Ok(Admitted {
                            equipment: Some(device),
                            ..
                        }),
                        Some(task),
                    ) => (device, task.to_owned()),
                    // The status row's pattern has both `{id}` and `{task}`.
                    _ => return no_route(&request),
                };
                drop(params);
                let query = into_query(request);
                self.status(device, &task, &query).await
            }
            Handler::Tasks(route) => self.tasks(*route, &request, &params).await,
        }
    }
}

fn into_query(request: HttpRequest) -> String {
    request.query
}

/// A request past [`ServiceB::admit`]'s checks: the route's device, if it names one, and the token
/// that let it in (named as the actor of a write; reads never need the name).
struct Admitted {
    equipment: Option<EquipmentId>,
    holder: Option<Holder>,
}

impl ServiceB {
    /// A task route, after [`Self::admit`]'s checks.
    async fn tasks(&self, route: TaskRoute, request: &HttpRequest, params: &Params<'_>) -> Response {
        let Admitted { equipment, holder } = match self.admit(route, request, params) {
            Ok(admitted) => admitted,
            Err(refused) => {
                if route.is_write() {
                    Box::pin(self.record_refusal(request, refused.status())).await;
                }
                return *refused;
            }
        };
        use TaskRoute::*;
        let actor = || Self::actor(holder.as_ref(), request);
        let draft = |action: AuditAction, equipment: &EquipmentId| {
            let mut record = Self::draft(&actor(), request, action);
            record.equipment_ids.push(equipment.clone());
            record
        };
        // The operator routes are boxed: a request's future is as large as its largest branch, and
        // each of 10,000 held `?wait=` status requests would otherwise carry their size.
        match (route, equipment, params.get("task")) {
            (AllTasks, _, _) => Box::pin(tasks::list(&self.registry, None, &request.query)).await,
            (Audit, _, _) => Box::pin(audit::list(&self.registry, &request.query)).await,
            (Bulk(action), _, _) => {
                let draft = Self::draft(&actor(), request, action.audit_action());
                let (registry, publisher, metrics) =
                    (self.registry.clone(), self.publisher.clone(), self.metrics.clone());
                let body = request.body.clone();
                // Detached, like a create: a client that leaves does not stop the walk halfway, and
                // what it changed is always recorded in the audit trail.
                let run = tokio::spawn(async move {
                    bulk::run(&registry, &publisher, metrics.as_ref(), action, &body, draft).await
                });
                run.await.unwrap_or_else(|_| {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Bulk action stopped unexpectedly; send the same request again to go on",
                    )
                })
            }
            (Retry, Some(device), Some(task)) => {
                let draft = draft(AuditAction::Retry, &device);
                Box::pin(tasks::retry(&self.registry, &self.publisher, device, task, draft)).await
            }
            (DeviceTasks, device, _) => Box::pin(tasks::list(&self.registry, device, &request.query)).await,
            (Create, Some(device), _) => {
                let draft = draft(AuditAction::Create, &device);
                Box::pin(self.create(device, request, draft)).await
            }
            (Cancel, Some(device), Some(task)) => {
                let draft = draft(AuditAction::Cancel, &device);
                Box::pin(tasks::cancel(
                    &self.registry,
                    self.metrics.as_ref(),
                    device,
                    task,
                    draft,
                ))
                .await
            }
            (Status, Some(device), Some(task)) => self.status(device, task, &request.query).await,
            // A row whose pattern lacks the `{id}` or `{task}` its handler needs: none is.
            (Retry | Create | Cancel | Status, _, _) => no_route(request),
        }
    }

    /// The checks every task route takes, in the contract's order: token, loopback for writes,
    /// equipment id, then whether new tasks are accepted.
    fn admit(&self, route: TaskRoute, request: &HttpRequest, params: &Params<'_>) -> Result<Admitted, Box<Response>> {
        let holder = self.authorize(request, route.needs())?;
        if route.is_write() {
            if let Some(refused) = cross_site::refuse_cross_site(request) {
                tracing::warn!(path = %request.path, "cross-site write refused");
                return Err(Box::new(refused));
            }
        }
        if route.is_loopback_only() && !dashboard::may_write(self.tokens.required(), request.peer) {
            return Err(Box::new(match route {
                TaskRoute::Audit => audit::loopback_only(),
                _ => dashboard::forbidden(),
            }));
        }
        let equipment = match params.get("id") {
            None => None,
            Some(id) => match EquipmentId::parse(id) {
                Ok(equipment) => Some(equipment),
                Err(_) => return Err(Box::new(error(StatusCode::NOT_FOUND, EQUIPMENT_NOT_FOUND))),
            },
        };
        if route.is_write() {
            if let Some(refused) = cross_site::refuse_non_json(request) {
                return Err(Box::new(refused));
            }
        }
        if route.changes_tasks() {
            if let Some(refused) = self.refuse_while_stopping() {
                if matches!(route, TaskRoute::Create) {
                    self.metrics.task_created(Admission::Refused);
                }
                return Err(Box::new(refused));
            }
        }
        Ok(Admitted { equipment, holder })
    }

    fn refuse_while_stopping(&self) -> Option<Response> {
        (!self.readiness.accepting.load(Ordering::Acquire)).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service is starting or shutting down and accepts no new tasks; retry shortly",
            )
        })
    }
}
