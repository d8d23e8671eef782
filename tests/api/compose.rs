//! compose.yaml and the Dockerfile checked against the binary: services, ports, health, and options it reads,
//! for the default services and for the `scale` profile (PostgreSQL and three equal instances).

use clap::{CommandFactory, FromArgMatches};
use cpe_config::config::Cli;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// compose.yaml with its `<<: *anchor` merge keys applied, as docker compose reads it.
fn compose() -> Value {
    let mut compose: Value = serde_yaml_ng::from_str(&read("compose.yaml")).expect("compose.yaml is valid YAML");
    compose.apply_merge().expect("compose.yaml's merge keys apply");
    compose
}

/// The instances of the `scale` profile.
const INSTANCES: [&str; 3] = ["cpe-config-1", "cpe-config-2", "cpe-config-3"];

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_mapping(), "compose.yaml has no service `{name}`");
    service
}

fn strings(list: &Value) -> Vec<String> {
    list.as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("expected a string, got {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Container ports a service publishes: `"8080:8080"`, `"127.0.0.1:8080:8080/tcp"` or a long-form mapping.
fn published_container_ports(service: &Value) -> BTreeSet<u16> {
    let Some(ports) = service["ports"].as_sequence() else {
        return BTreeSet::new();
    };
    ports
        .iter()
        .map(|port| match port {
            Value::Mapping(_) => port["target"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("a long-form port has a numeric target"),
            Value::String(text) => {
                let container = text.rsplit(':').next().unwrap_or(text);
                let container = container.split('/').next().unwrap_or(container);
                container
                    .parse()
                    .unwrap_or_else(|_| panic!("cannot read the container port of `{text}`"))
            }
            Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port number"),
            other => panic!("unexpected port entry {other:?}"),
        })
        .collect()
}

/// A service's environment as name/value pairs, from the map or the `NAME=value` list form.
fn environment(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => String::new(),
                    other => panic!("unexpected environment value {other:?}"),
                };
                (k.as_str().expect("a variable name").to_owned(), value)
            })
            .collect(),
        Value::Sequence(_) => strings(&service["environment"])
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (entry, String::new()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every environment variable the binary reads, from the `[env: NAME=...]` notes of `--help`.
fn variables_the_binary_reads() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("cpe-config --help runs");
    assert!(output.status.success(), "cpe-config --help failed");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    let names: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().expect("a variable name").to_owned())
        .collect();
    assert!(names.contains("AMQP_URL"), "--help lists no [env: ...] notes:\n{help}");
    names
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` has no port"))
}

#[test]
fn rabbitmq_publishes_amqp_and_management_and_has_a_healthcheck() {
    let compose = compose();
    let rabbitmq = service(&compose, "rabbitmq");
    let ports = published_container_ports(rabbitmq);
    assert!(ports.contains(&5672) && ports.contains(&15672), "{ports:?}");
    let test = strings(&rabbitmq["healthcheck"]["test"]).join(" ");
    assert!(test.contains("rabbitmq-diagnostics"), "healthcheck: {test}");
}

#[test]
fn cpe_config_waits_for_a_healthy_broker_and_publishes_both_services() {
    let compose = compose();
    let app = service(&compose, "cpe-config");
    assert_eq!(
        app["depends_on"]["rabbitmq"]["condition"].as_str(),
        Some("service_healthy")
    );
    let ports = published_container_ports(app);
    assert!(ports.contains(&8080) && ports.contains(&8081), "{ports:?}");
    let env = environment(app);
    for name in ["SERVICE_A_ADDR", "SERVICE_B_ADDR"] {
        let (_, addr) = env
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("cpe-config does not set {name}"));
        assert!(
            ports.contains(&port_of(addr)),
            "{name}={addr} listens on a port the service does not publish ({ports:?})"
        );
    }
    let (_, amqp) = env
        .iter()
        .find(|(n, _)| n == "AMQP_URL")
        .expect("cpe-config sets AMQP_URL");
    assert!(
        amqp.starts_with("amqp://") && amqp.contains("@rabbitmq:5672"),
        "AMQP_URL={amqp} does not point at the rabbitmq service"
    );
}

/// The directory a service mounts at `CERTS_DIR` (default /app/certs): the source and its mode.
fn certs_mount(service: &Value) -> (String, bool) {
    let env = environment(service);
    let certs_dir = env
        .iter()
        .find(|(n, _)| n == "CERTS_DIR")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/app/certs".into());
    strings(&service["volumes"])
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let (source, target, mode) = (parts.next()?, parts.next()?, parts.next());
            (target == certs_dir).then(|| (source.to_owned(), mode == Some("ro")))
        })
        .unwrap_or_else(|| panic!("nothing is mounted at {certs_dir}"))
}

#[test]
fn a_one_shot_service_of_the_same_image_makes_the_certificates_first() {
    let compose = compose();
    let certs = service(&compose, "certs");
    let app = service(&compose, "cpe-config");
    assert_eq!(
        certs["image"], app["image"],
        "the certs service runs the cpe-config image"
    );
    let command = strings(&certs["command"]);
    assert_eq!(
        command,
        ["certs", "--if-missing"],
        "a second `up` must not fail on the existing pair"
    );
    assert_eq!(
        app["depends_on"]["certs"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    let (made_into, read_only) = certs_mount(certs);
    let (read_from, app_read_only) = certs_mount(app);
    assert!(
        !read_only && app_read_only,
        "certs writes the volume, cpe-config only reads it"
    );
    assert_eq!(made_into, read_from, "both mount the same volume");
    assert!(
        compose["volumes"]
            .as_mapping()
            .is_some_and(|v| v.contains_key(made_into.as_str())),
        "{made_into} must be a named volume, not a host directory that needs a Rust toolchain to fill"
    );
}

#[test]
fn cpe_config_has_a_healthcheck_on_its_readiness() {
    let compose = compose();
    let test = strings(&service(&compose, "cpe-config")["healthcheck"]["test"]);
    assert_eq!(test, ["CMD", "cpe-config", "healthcheck"]);
}

#[test]
fn the_certs_and_healthcheck_commands_compose_runs_exist() {
    for args in [&["certs", "--help"][..], &["healthcheck", "--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
            .args(args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "cpe-config {args:?} failed");
        assert!(args[0] != "certs" || help.contains("--if-missing"), "{help}");
    }
}

#[test]
fn every_variable_compose_sets_is_one_the_binary_reads() {
    let compose = compose();
    let known = variables_the_binary_reads();
    for name in std::iter::once("cpe-config").chain(INSTANCES) {
        for (variable, _) in environment(service(&compose, name)) {
            assert!(
                known.contains(&variable),
                "{name} sets {variable}, which cpe-config does not read (it reads {known:?})"
            );
        }
    }
}

/// The options a service's environment amounts to, parsed and checked as the binary does at start.
/// Each variable becomes its flag, and the parser reads no environment: the test process's own (a
/// `DATABASE_URL` of the machine, say) must not fill in what compose leaves unset.
fn parsed_options(service: &Value) -> Result<cpe_config::config::Config, String> {
    let command = Cli::command();
    let mut args = vec!["cpe-config".to_string()];
    for (variable, value) in environment(service) {
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == variable.as_str()))
            .and_then(|arg| arg.get_long())
            .ok_or_else(|| format!("no option reads {variable}"))?;
        args.push(format!("--{flag}={value}"));
    }
    let matches = command
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(&args)
        .map_err(|e| e.to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    cli.config.validate()?;
    Ok(cli.config)
}

#[test]
fn every_value_compose_sets_is_one_the_binary_accepts() {
    let compose = compose();
    for name in std::iter::once("cpe-config").chain(INSTANCES) {
        if let Err(error) = parsed_options(service(&compose, name)) {
            panic!("{name}: cpe-config would refuse to start: {error}");
        }
    }
}

/// `(host, container)` ports of a service's short-form `"host:container"` entries.
fn published_port_pairs(service: &Value) -> Vec<(u16, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|text| {
            let mut parts = text.split('/').next().unwrap_or(text).rsplit(':');
            let container = parts.next().and_then(|p| p.parse().ok());
            let host = parts.next().and_then(|p| p.parse().ok());
            match (host, container) {
                (Some(host), Some(container)) => (host, container),
                _ => panic!("expected `host:container` in `{text}`"),
            }
        })
        .collect()
}

#[test]
fn the_default_services_belong_to_no_profile() {
    let compose = compose();
    for name in ["rabbitmq", "certs", "cpe-config"] {
        assert!(
            service(&compose, name).get("profiles").is_none(),
            "{name} must start with a plain `docker compose up`"
        );
    }
}

#[test]
fn the_scale_profile_has_postgres_with_a_healthcheck_and_a_volume() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    assert_eq!(strings(&postgres["profiles"]), ["scale"]);
    let image = postgres["image"].as_str().expect("an image");
    assert!(image.starts_with("postgres:15"), "{image}");
    let test = strings(&postgres["healthcheck"]["test"]).join(" ");
    assert!(test.contains("pg_isready"), "healthcheck: {test}");
    let data = strings(&postgres["volumes"])
        .into_iter()
        .find_map(|v| v.strip_suffix(":/var/lib/postgresql/data").map(str::to_owned))
        .expect("a volume for the data directory");
    assert!(
        compose["volumes"]
            .as_mapping()
            .is_some_and(|v| v.contains_key(data.as_str())),
        "{data} must be a named volume"
    );
}

#[test]
fn the_scale_profile_runs_three_equal_instances_on_postgres_and_a_quorum_queue() {
    let compose = compose();
    let default = parsed_options(service(&compose, "cpe-config")).unwrap();
    let postgres = environment(service(&compose, "postgres"));
    let postgres_env = |name: &str| {
        postgres
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("postgres does not set {name}"))
    };
    let expected_store = format!(
        "postgres://{}:{}@postgres:5432/{}",
        postgres_env("POSTGRES_USER"),
        postgres_env("POSTGRES_PASSWORD"),
        postgres_env("POSTGRES_DB")
    );
    let mut host_ports: Vec<u16> = published_port_pairs(service(&compose, "cpe-config"))
        .into_iter()
        .map(|(host, _)| host)
        .collect();
    for name in INSTANCES {
        let instance = service(&compose, name);
        assert_eq!(strings(&instance["profiles"]), ["scale"], "{name}");
        assert_eq!(
            instance["image"],
            service(&compose, "cpe-config")["image"],
            "{name} runs the cpe-config image"
        );
        assert_eq!(
            strings(&instance["healthcheck"]["test"]),
            ["CMD", "cpe-config", "healthcheck"],
            "{name}"
        );
        for (dependency, condition) in [
            ("rabbitmq", "service_healthy"),
            ("postgres", "service_healthy"),
            ("certs", "service_completed_successfully"),
        ] {
            assert_eq!(
                instance["depends_on"][dependency]["condition"].as_str(),
                Some(condition),
                "{name} on {dependency}"
            );
        }
        let (certs, read_only) = certs_mount(instance);
        assert_eq!((certs.as_str(), read_only), ("cpe-certs", true), "{name}");

        let options = parsed_options(instance).unwrap();
        assert_eq!(options.role, cpe_config::config::Role::All, "{name}");
        assert_eq!(
            options.broker.queue_type,
            cpe_config::queue::amqp::QueueType::Quorum,
            "{name}"
        );
        assert_ne!(
            options.broker.queue, default.broker.queue,
            "{name}: the default service declares its queue classic on the same broker"
        );
        let amqp = options
            .broker
            .amqp_url
            .as_ref()
            .map(|url| url.expose().as_str())
            .unwrap_or_default();
        assert!(amqp.contains("@rabbitmq:5672"), "{name}: AMQP_URL={amqp}");
        let store = environment(instance)
            .into_iter()
            .find(|(n, _)| n == "STORE")
            .map(|(_, v)| v);
        assert_eq!(store.as_deref(), Some(expected_store.as_str()), "{name}");

        let pairs = published_port_pairs(instance);
        let containers: BTreeSet<u16> = pairs.iter().map(|(_, container)| *container).collect();
        for addr in [options.service_a.service_a_addr, options.http.service_b_addr] {
            assert!(
                containers.contains(&addr.port()),
                "{name} listens on {addr}, which it does not publish ({pairs:?})"
            );
        }
        host_ports.extend(pairs.iter().map(|(host, _)| *host));
    }
    let distinct: BTreeSet<u16> = host_ports.iter().copied().collect();
    assert_eq!(distinct.len(), host_ports.len(), "host ports collide: {host_ports:?}");
    // Every instance is the same but for its host ports.
    let mut shapes = INSTANCES.iter().map(|name| {
        let mut instance = service(&compose, name).clone();
        instance.as_mapping_mut().unwrap().remove("ports");
        instance
    });
    let first = shapes.next().unwrap();
    assert!(
        shapes.all(|shape| shape == first),
        "the instances differ beyond their ports"
    );
}

/// The Dockerfile's stages: each is its `FROM` line and the instructions after it.
fn stages(dockerfile: &str) -> Vec<Vec<String>> {
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line.to_owned());
        }
    }
    stages
}

fn instruction<'a>(stage: &'a [String], name: &str) -> Option<&'a str> {
    stage
        .iter()
        .rev()
        .find(|line| line.to_ascii_uppercase().starts_with(&format!("{name} ")))
        .map(|line| line[name.len()..].trim())
}

#[test]
fn the_image_runs_the_binary_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    let stages = stages(&dockerfile);
    assert!(stages.len() >= 2, "the Dockerfile is not multi-stage");
    let last = stages.last().unwrap();
    let user = instruction(last, "USER").expect("the final stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "the final stage runs as {user}");
    let entrypoint = instruction(last, "ENTRYPOINT").expect("the final stage sets ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("ENTRYPOINT uses the exec (JSON) form");
    assert!(
        entrypoint
            .first()
            .is_some_and(|program| program.ends_with("/cpe-config")),
        "ENTRYPOINT is {entrypoint:?}"
    );
    let copied = last
        .iter()
        .any(|line| line.contains("target/release/cpe-config") && line.contains(&entrypoint[0]));
    assert!(
        copied,
        "the final stage does not copy the release binary to {}",
        entrypoint[0]
    );
}

/// `1.90` from `FROM rust:1.90-slim-bookworm AS builder`, or None for another image.
fn rust_image_version(from: &str) -> Option<(u32, u32)> {
    let image = from.split_whitespace().nth(1)?;
    let tag = image.strip_prefix("rust:")?;
    let mut parts = tag.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The triple this test was built for, as rustc names it (`host: x86_64-unknown-linux-gnu`).
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .to_owned()
}

fn minor_version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

#[test]
fn the_builder_toolchain_can_build_the_locked_dependencies() {
    let dockerfile = read("Dockerfile");
    let builder = stages(&dockerfile)
        .iter()
        .find_map(|stage| rust_image_version(&stage[0]))
        .expect("a build stage FROM rust:<major>.<minor>...");
    // Only the host's packages: they are the ones `cargo test` itself fetched, so this reads
    // nothing beyond the repository and the toolchain's cache (other platforms' crates, such as
    // Windows-only ones, may never have been downloaded on this machine).
    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        metadata.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("cargo metadata prints JSON");
    let needed = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by_key(|(version, _)| minor_version(version))
        .expect("some package declares a rust-version");
    assert!(
        builder >= minor_version(needed.0),
        "the Dockerfile builds with Rust {}.{}, but {} needs {}",
        builder.0,
        builder.1,
        needed.1,
        needed.0
    );
}

#[test]
fn the_build_context_leaves_out_keys_and_build_output() {
    let ignored = read(".dockerignore");
    let entries: Vec<&str> = ignored.lines().map(str::trim).collect();
    for entry in ["target", "certs/*.pem"] {
        assert!(entries.contains(&entry), ".dockerignore lacks {entry}");
    }
}

#[test]
fn the_builder_stage_copies_every_workspace_member() {
    let manifest = read("Cargo.toml");
    let members_line = manifest
        .lines()
        .find(|line| line.starts_with("members = "))
        .expect("Cargo.toml lists its workspace members on one line");
    let members: Vec<String> = serde_json::from_str(members_line.trim_start_matches("members = ")).unwrap();
    let dockerfile = read("Dockerfile");
    let builder = &stages(&dockerfile)[0];
    for member in members.iter().filter(|m| *m != ".") {
        let copied = builder
            .iter()
            .any(|line| line.to_ascii_uppercase().starts_with("COPY ") && line.contains(&format!("{member}/")));
        assert!(
            copied,
            "the builder stage does not copy workspace member {member}/: cargo cannot load the workspace"
        );
    }
}
