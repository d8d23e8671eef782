//! P1, create throughput: POSTs to Service B over HTTPS (file store, RabbitMQ with confirms) against
//! the raw rate of publish-with-confirm of the same message to the same broker.

use crate::harness::Bench;
use crate::load::{closed_loop, create_task, device, http1_clients, Run, Until};
use crate::report::{size, Report, Row, Target};
use anyhow::Result;
use cpe_actors::ports::TaskStore;
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskRecord};
use cpe_config::queue::amqp::{AmqpConfig, AmqpLink, AmqpPublisher, QueueSpec};
use cpe_config::store::file::FileStore;
use cpe_test_support::unique_queue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TARGET: f64 = 0.5;

/// Create rates measured here, for P4's baseline: the timed run, and one per size.
#[derive(Default)]
pub struct Rates {
    pub timed: Option<f64>,
    pub sized: BTreeMap<u64, f64>,
}

pub async fn run(bench: &Bench, report: &mut Report) -> Rates {
    let mut rates = Rates::default();
    let Ok(url) = bench.broker.clone() else {
        let why = bench.broker.clone().err().unwrap_or_default();
        report.add(Row::skipped("P1 create throughput", why));
        return rates;
    };
    let s = &bench.settings;
    let timed = Until::Elapsed(s.duration);
    if let Err(error) = timed_runs(bench, &url, timed, report, &mut rates).await {
        report.add(Row::skipped("P1 create throughput", format!("{error:#}")));
    }
    for &n in &s.sizes {
        let until = Until::Count {
            total: n,
            limit: s.limit,
        };
        let figure = format!("P1 create, N={}", size(n));
        match sized_run(bench, &url, until, &figure, report).await {
            Ok(rate) => drop(rates.sized.insert(n, rate)),
            Err(error) => report.add(Row::skipped(figure, format!("{error:#}"))),
        }
    }
    rates
}

async fn timed_runs(bench: &Bench, url: &str, until: Until, report: &mut Report, rates: &mut Rates) -> Result<()> {
    bench.broker_dropped().await;
    // First, while the broker is idle: what the file store alone sustains, one put after another.
    let puts = file_put_rate(bench, Duration::from_secs(3)).await?;
    let raw = raw_publish(bench, url, until).await?;
    note(report, "P1 raw publish-with-confirm, one confirm channel", &raw);
    let app = creates(bench, "file", true, until).await?;
    note(report, "P1 POST create (file store, RabbitMQ)", &app);
    rates.timed = Some(app.rate());
    let s = &bench.settings;
    let figure = format!("P1 create throughput ({} conns, {:?})", s.connections, s.duration);
    let raw_rate = format!("{:.0} msg/s raw publish+confirm", raw.rate());
    let row = Row::ratio(
        figure,
        latency(&app),
        raw_rate.clone(),
        app.rate() / raw.rate().max(1e-9),
    );
    let row = bench
        .check_broker_during(row.target(Target::AtLeast(TARGET)), report)
        .await;
    report.add(row);
    // The store shared by several instances, against the file store of the same run.
    if let Some(schema) = cpe_config::store::postgres::scratch::ScratchSchema::create() {
        let shared = creates(bench, &schema.url, true, until).await?;
        note(report, "P1 POST create (PostgreSQL store, RabbitMQ)", &shared);
        let row = Row::ratio(
            "P1 create with the PostgreSQL store",
            latency(&shared),
            format!("{:.0} req/s with the file store", app.rate()),
            shared.rate() / app.rate().max(1e-9),
        );
        report.add(row.target(Target::AtLeast(0.5)));
        let three = creates_on_instances(bench, &schema.url, 3, until).await?;
        note(
            report,
            "P1 POST create (3 instances, one PostgreSQL store, RabbitMQ)",
            &three,
        );
        report.add(Row::ratio(
            "P1 create, 3 instances sharing the PostgreSQL store",
            latency(&three),
            format!("{:.0} req/s with one instance", shared.rate()),
            three.rate() / shared.rate().max(1e-9),
        ));
    }
    // Diagnostics: the same POSTs without the file store, and without the broker.
    let memory = creates(bench, "memory", true, until).await?;
    note(report, "P1 POST create (memory store, RabbitMQ)", &memory);
    let ratio = memory.rate() / raw.rate().max(1e-9);
    let row = Row::ratio(
        "P1 diagnostic: create with the memory store",
        latency(&memory),
        raw_rate,
        ratio,
    );
    let row = bench.check_broker_during(row, report).await;
    report.add(row);
    let local = creates(bench, "file", false, until).await?;
    note(report, "P1 POST create (file store, in-process queue)", &local);
    let p1 = format!("{:.0} req/s P1 create", app.rate());
    let ratio = local.rate() / app.rate().max(1e-9);
    report.add(Row::ratio(
        "P1 diagnostic: create with the file store, no broker",
        latency(&local),
        p1.clone(),
        ratio,
    ));
    let (put_rate, cpu) = puts;
    report.add(Row::ratio(
        "P1 diagnostic: FileStore::put alone, one caller",
        format!("{put_rate:.0} puts/s ({:.2} ms each)", 1000.0 / put_rate.max(1e-9)),
        p1,
        put_rate / app.rate().max(1e-9),
    ));
    report.note(format!(
        "P1 FileStore::put alone, measured first: {put_rate:.0} puts/s; CPU {cpu}"
    ));
    Ok(())
}

fn note<T>(report: &mut Report, what: &str, run: &Run<T>) {
    report.note(format!("{what}: {}; CPU {}", run.summary(), run.cpu));
}

/// `1234 req/s (p50 1.0 ms, p99 9.9 ms)`
fn latency<T>(run: &Run<T>) -> String {
    format!(
        "{:.0} req/s (p50 {:.1} ms, p99 {:.1} ms)",
        run.rate(),
        run.percentile_ms(0.5),
        run.percentile_ms(0.99)
    )
}

async fn sized_run(bench: &Bench, url: &str, until: Until, figure: &str, report: &mut Report) -> Result<f64> {
    bench.broker_dropped().await;
    let raw = raw_publish(bench, url, until).await?;
    let app = creates(bench, "file", true, until).await?;
    report.note(format!(
        "{figure}: raw publish {}; POST create {}; CPU during create {}",
        raw.summary(),
        app.summary(),
        app.cpu
    ));
    let cut = if app.cut_short {
        format!(", cut at {:?}", bench.settings.limit)
    } else {
        String::new()
    };
    let row = Row::ratio(
        figure,
        format!("{:.0} req/s ({} tasks{cut})", app.rate(), app.ok.len()),
        format!("{:.0} msg/s raw", raw.rate()),
        app.rate() / raw.rate().max(1e-9),
    );
    let row = bench
        .check_broker_during(row.target(Target::AtLeast(TARGET)), report)
        .await;
    report.add(row);
    Ok(app.rate())
}

/// The message Service B publishes for one task, byte for byte the same shape.
pub fn sample_message() -> TaskMessage {
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse(&device(0)).expect("a valid id"),
        request: ConfigRequest::from_json(crate::load::EXAMPLE.as_bytes()).expect("the example is valid"),
    }
}

/// The limit: `connections` loops publishing the same message through one shared confirm channel, as the
/// app's `AmqpPublisher` does, to a queue declared the same way (durable, dead-lettering).
async fn raw_publish(bench: &Bench, url: &str, until: Until) -> Result<Run<()>> {
    let queue = unique_queue("bench-raw");
    let config = AmqpConfig {
        url: url.to_owned(),
        queue: queue.clone(),
        prefetch: 1,
        connect_timeout: Duration::from_secs(5),
    };
    let link = AmqpLink::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let publisher = AmqpPublisher::new(link.clone(), QueueSpec::tasks(queue.clone()));
    let body: Arc<[u8]> = sample_message().to_json().into();
    // Connect and declare first (on the load runtime, like the loops), outside the measurement.
    let (first, warm) = (publisher.clone(), body.clone());
    bench
        .load
        .spawn(async move { first.publish_json(&warm).await })
        .await??;
    let connections = vec![publisher; bench.settings.connections];
    let run = closed_loop(&bench.load, connections, until, move |publisher, _| {
        let body = body.clone();
        async move { publisher.publish_json(&body).await.map_err(|e| e.to_string()) }
    })
    .await;
    link.close().await;
    bench.delete_queues(&queue).await;
    Ok(run)
}

/// POST creates against Service B alone (`--role service-b`: no workers, so the queue only fills). Without
/// the broker, the in-process queue needs `--role all`: one worker then holds one task for an hour and the
/// rest wait, so the store sees the creates and one more write only.
async fn creates(bench: &Bench, store: &str, broker: bool, until: Until) -> Result<Run<()>> {
    let queue = broker.then(|| unique_queue("bench-p1"));
    let mut args = vec![format!("--store={store}")];
    if broker {
        args.push("--role=service-b".into());
    } else {
        args.extend(["--workers=1".into(), "--config-delay=1h".into()]);
    }
    let running = bench.start(&bench.fresh_dir("p1"), queue.as_deref(), &args).await?;
    let base = running.service_b();
    let clients = http1_clients(bench.settings.connections, &bench.trust)?;
    let result = async {
        warm_up(bench, &clients, &base).await?;
        Ok::<_, anyhow::Error>(
            closed_loop(&bench.load, clients, until, move |client, seq| {
                let base = base.clone();
                async move { create_task(&client, &base, &device(seq)).await.map(drop) }
            })
            .await,
        )
    }
    .await;
    bench.stop(running, true).await;
    result
}

/// POST creates spread over `instances` Service B instances (in this process, so on the same cores)
/// that share one store and one queue: the connections take the instances in turn.
async fn creates_on_instances(bench: &Bench, store: &str, instances: usize, until: Until) -> Result<Run<()>> {
    let queue = unique_queue("bench-p1-shared");
    let args = [format!("--store={store}"), "--role=service-b".into()];
    let mut running = Vec::new();
    for n in 0..instances {
        running.push(
            bench
                .start(&bench.fresh_dir(&format!("p1-{n}")), Some(&queue), &args)
                .await?,
        );
    }
    let bases: Vec<String> = running.iter().map(|r| r.service_b()).collect();
    let clients = http1_clients(bench.settings.connections, &bench.trust)?;
    let result = async {
        let mut connections = Vec::with_capacity(clients.len());
        for (n, client) in clients.into_iter().enumerate() {
            let base = bases[n % bases.len()].clone();
            warm_up(bench, std::slice::from_ref(&client), &base).await?;
            connections.push((client, base));
        }
        Ok::<_, anyhow::Error>(
            closed_loop(&bench.load, connections, until, move |connection, seq| async move {
                let (client, base) = connection.as_ref();
                create_task(client, base, &device(seq)).await.map(drop)
            })
            .await,
        )
    }
    .await;
    for instance in running {
        bench.stop(instance, true).await;
    }
    result
}

/// One create per client before measuring: opens every connection, the broker link and the queue.
pub async fn warm_up(bench: &Bench, clients: &[reqwest::Client], base: &str) -> Result<()> {
    let warm: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, base) = (client.clone(), base.to_owned());
            bench
                .load
                .spawn(async move { create_task(&client, &base, "warmup1").await })
        })
        .collect();
    for handle in warm {
        handle
            .await?
            .map_err(|e| anyhow::anyhow!("warm-up create failed: {e}"))?;
    }
    Ok(())
}

/// Serial `FileStore::put` of new queued tasks for `span`: one write transaction, one fsync, each.
async fn file_put_rate(bench: &Bench, span: Duration) -> Result<(f64, crate::sys::CpuUse)> {
    let dir = bench.fresh_dir("puts");
    let store = FileStore::open(&dir)?;
    let message = sample_message();
    let meter = crate::sys::CpuMeter::start();
    let (count, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut count = 0u64;
        while started.elapsed() < span {
            let record = TaskRecord::queued(TaskId::new(), message.equipment_id.clone(), message.request.clone());
            if store.put(&record).is_err() {
                break;
            }
            count += 1;
        }
        (count, started.elapsed())
    })
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    let cpu = meter.stop();
    Ok((count as f64 / elapsed.as_secs_f64(), cpu))
}
