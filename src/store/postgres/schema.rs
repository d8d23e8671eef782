//! The schema, as numbered migrations embedded in the binary and applied at start. Several instances
//! may start at once: each applies the missing steps inside one transaction that first takes a
//! transaction-scoped advisory lock, so exactly one of them does the work and the others then see it done.

use postgres::Client;

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: "cpe-conf" in ASCII.
const MIGRATION_LOCK: i64 = 0x6370_652d_636f_6e66;

/// Each step runs once, in order; a released step is never edited, only followed by a new one.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    CREATE TABLE cpe_tasks (
        id uuid PRIMARY KEY,
        -- Acceptance order across instances: the database's, not any instance's clock.
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        equipment_id text NOT NULL,
        -- The request as JSON (parameters included, as the file store keeps them).
        request text NOT NULL,
        -- 0 queued, 1 running, 2 completed, 3 failed, 4 cancelled.
        status smallint NOT NULL CHECK (status BETWEEN 0 AND 4),
        attempts integer NOT NULL,
        last_error text,
        -- Milliseconds since the Unix epoch.
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        retried_as uuid,
        -- The outbox: set while a queued task may not be on the queue yet, to the time (ms) from
        -- which the relay publishes it; NULL once published (or begun, which proves it was).
        publish_due bigint
    );
    CREATE INDEX cpe_tasks_by_created ON cpe_tasks (created_at DESC, id DESC);
    CREATE INDEX cpe_tasks_by_status ON cpe_tasks (status, created_at DESC, id DESC);
    CREATE INDEX cpe_tasks_by_device ON cpe_tasks (equipment_id, created_at DESC, id DESC);
    CREATE INDEX cpe_tasks_open ON cpe_tasks (equipment_id, seq) WHERE status < 2;
    CREATE INDEX cpe_tasks_final_by_update ON cpe_tasks (updated_at) WHERE status >= 2;
    CREATE INDEX cpe_tasks_unpublished ON cpe_tasks (publish_due) WHERE publish_due IS NOT NULL;

    CREATE TABLE cpe_idempotency_keys (
        key text PRIMARY KEY,
        task_id uuid NOT NULL,
        fingerprint bigint NOT NULL,
        created_at bigint NOT NULL
    );
    CREATE INDEX cpe_idempotency_keys_by_time ON cpe_idempotency_keys (created_at);

    -- One configuration at a time per device, across every instance (see leases.rs).
    CREATE TABLE cpe_device_leases (
        equipment_id text PRIMARY KEY,
        task_id uuid NOT NULL,
        holder text NOT NULL,
        -- Grows by one with every new holder: a holder that lost the lease cannot act under it.
        fence bigint NOT NULL,
        expires_at timestamptz NOT NULL
    );
    ",
    ),
    (
        2,
        "
    -- When the queue last confirmed a message of the task (ms), and how many times the reconciler
    -- handed the task to the queue again because its message was gone (reconcile.rs).
    ALTER TABLE cpe_tasks ADD COLUMN handed_at bigint, ADD COLUMN handovers integer NOT NULL DEFAULT 0;
    ",
    ),
    (
        3,
        "
    -- A device's tasks of one status, newest first: a listing with ?status= reads only those,
    -- not every other task of the device.
    CREATE INDEX cpe_tasks_by_device_status ON cpe_tasks (equipment_id, status, created_at DESC, id DESC);
    -- Set when a worker acknowledged the task's message because an older task of its device was
    -- unfinished: the write that ends that task hands this one to the queue again (outbox.rs).
    ALTER TABLE cpe_tasks ADD COLUMN passed_over boolean NOT NULL DEFAULT false;
    ",
    ),
    (
        4,
        "
    -- Who created the task: a token's name, or `loopback` (audit.rs).
    ALTER TABLE cpe_tasks ADD COLUMN requested_by text;
    -- The audit trail: one row per change (or refused write), in the transaction of the change.
    CREATE TABLE cpe_audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        -- Milliseconds since the Unix epoch, stamped by the instance that took the request.
        at bigint NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        -- The devices concerned, as `|a|b|` (an equipment id holds no `|`).
        devices text NOT NULL,
        -- The record as JSON (see AuditRecord).
        record text NOT NULL
    );
    CREATE INDEX cpe_audit_by_time ON cpe_audit (at);
    CREATE INDEX cpe_audit_by_actor ON cpe_audit (actor, id DESC);
    ",
    ),
];

/// Brings the schema up to date; returns the steps applied (none when another instance did them).
pub fn migrate(client: &mut Client) -> Result<Vec<i32>, postgres::Error> {
    let mut txn = client.transaction()?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS cpe_schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let done: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM cpe_schema_migrations", &[])?
        .get(0);
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > done) {
        txn.batch_execute(sql)?;
        txn.execute("INSERT INTO cpe_schema_migrations (version) VALUES ($1)", &[version])?;
        applied.push(*version);
    }
    txn.commit()?;
    Ok(applied)
}

/// The newest step this binary knows; a database migrated further by a newer binary is refused.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

pub fn current(client: &mut Client) -> Result<i32, postgres::Error> {
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM cpe_schema_migrations", &[])?
        .get(0))
}
