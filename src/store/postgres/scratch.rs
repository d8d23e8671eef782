//! A private schema in a real PostgreSQL, for tests and the bench: each gets empty tables of its own
//! in the same database, and the schema is dropped when the guard goes.

use postgres::{Client, NoTls};

/// Where tests and the bench find PostgreSQL unless TEST_DATABASE_URL says otherwise.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct ScratchSchema {
    base: String,
    name: String,
    /// The URL to open: the base URL with this schema first on the search path.
    pub url: String,
}

impl ScratchSchema {
    /// A new empty schema, or None (with a note) when no database answers. With REQUIRE_POSTGRES=1 a
    /// missing database is a failure instead.
    pub fn create() -> Option<Self> {
        let base = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let name = format!("cpe_test_{}", uuid::Uuid::new_v4().simple());
        let created = off_runtime({
            let (base, name) = (base.clone(), name.clone());
            move || connect(&base)?.batch_execute(&format!("CREATE SCHEMA {name}"))
        });
        if let Err(e) = created {
            if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (REQUIRE_POSTGRES=1) but {base} did not answer: {e}");
            }
            eprintln!(
                "skipping: PostgreSQL not reachable at {base} ({e}); set REQUIRE_POSTGRES=1 to make this a failure"
            );
            return None;
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Some(Self { base, name, url })
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = off_runtime(move || connect(&base)?.batch_execute(&format!("DROP SCHEMA {name} CASCADE")));
    }
}

fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(std::time::Duration::from_secs(3));
    config.connect(NoTls)
}

/// The blocking client must not run on a tokio thread: give it a thread of its own.
fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(work)
        .join()
        .expect("the scratch schema thread does not panic")
}
