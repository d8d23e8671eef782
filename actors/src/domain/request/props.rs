//! Property tests: request parsing never panics, and every failure is a 400 or a 422 with a message.

use super::*;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("timeoutInSeconds".to_owned()),
                    Just("parameters".to_owned()),
                    Just("vlan".to_owned()),
                    Just("interfaces".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn explained(result: Result<ConfigRequest, RequestError>) -> bool {
    match result {
        Ok(_) => true,
        Err(RequestError::Malformed(m) | RequestError::Invalid(m)) => !m.is_empty(),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(explained(ConfigRequest::from_json(&bytes)));
    }

    #[test]
    fn arbitrary_json_is_accepted_or_explained(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        prop_assert!(matches!(ConfigRequest::from_json(&bytes), Ok(_) | Err(RequestError::Invalid(_))));
    }

    #[test]
    fn accepted_requests_round_trip(timeout in 0u64..=MAX_TIMEOUT_SECS, vlan in 1i64..=4094, name in "[a-z]{1,10}") {
        let body = serde_json::json!({"timeoutInSeconds": timeout, "parameters": {"vlan": vlan, "username": name}});
        let request = ConfigRequest::from_value(&body).unwrap();
        prop_assert_eq!(ConfigRequest::from_value(&request.to_value()).unwrap(), request);
    }
}
