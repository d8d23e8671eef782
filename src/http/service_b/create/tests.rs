//! Unit tests of `http/service_b/create.rs`.

use super::*;
use serde_json::Value;

async fn answer(refusal: CreateError) -> (u16, Value) {
    use hyper::body::Body as _;
    let response = Response::from(refusal);
    let status = response.status().as_u16();
    let mut body = Box::pin(response.into_body());
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        bytes.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The answers api.md lists for a create, each from its one variant.
#[tokio::test]
async fn each_refusal_answers_its_status_and_message() {
    let stopped = tokio::spawn(std::future::pending::<()>());
    stopped.abort();
    let cases = [
        (
            CreateError::Body(RequestError::Malformed("not JSON".into())),
            400,
            "not JSON",
        ),
        (
            CreateError::Body(RequestError::Invalid("no vlan".into())),
            422,
            "no vlan",
        ),
        (
            CreateError::RepeatedKey,
            400,
            "Idempotency-Key is given more than once; send exactly one",
        ),
        (
            CreateError::BadKey,
            400,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ),
        (
            CreateError::KeyReused,
            422,
            "Idempotency-Key was already used with a different request",
        ),
        (
            CreateError::Store(StoreError::Unavailable("disk full".into())),
            503,
            "Task store unavailable; the task was not accepted, retry shortly",
        ),
        (
            CreateError::Queue(QueueError("no confirm".into())),
            503,
            "Task queue unavailable; the task was not accepted, retry shortly",
        ),
        (
            CreateError::HandOverStopped(stopped.await.unwrap_err()),
            503,
            "Task could not be accepted; retry shortly",
        ),
    ];
    for (refusal, status, message) in cases {
        let (got, body) = answer(refusal).await;
        assert_eq!((got, body["code"].as_u64()), (status, Some(u64::from(status))));
        assert_eq!(body["message"], message);
    }
}
