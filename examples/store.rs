//! A typed store on SQLite, no server needed: one writer connection, a few read-only readers,
//! threads writing at once, and items that are plain Rust structs.
//!
//! Run it with `cargo run --example store --features store,rusqlite`.

use std::time::Duration;

use futures_lite::future::block_on;
use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
use nexus_pool::store::{NexusStore, PooledSqliteBackend, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Todo {
    title: String,
    done: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!(
        "nexus-pool-store-example-{}.db",
        std::process::id()
    ));

    // SQLite writes one transaction at a time: one writer connection makes writers queue in
    // the pool (fair, bounded by acquire_timeout) instead of on SQLite's lock.
    let writer = SqliteConnectionFactory::new(&path)
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .name("sqlite-writer")
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .build()?,
        )
        .build()
        .unwrap();
    // WAL mode lets read-only connections read beside the writer.
    let readers = SqliteConnectionFactory::new(&path)
        .read_only()
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .name("sqlite-readers")
                .min_connections(0)
                .max_connections(4)
                .build()?,
        )
        .build()
        .unwrap();

    let backend = block_on(PooledSqliteBackend::new(writer.clone(), "todos"))?
        .with_read_pool(readers.clone());
    let todos: NexusStore<Todo, u32> = NexusStore::new(backend);

    block_on(async {
        todos
            .save_many(&[
                (
                    1,
                    Todo {
                        title: "write the adapter".into(),
                        done: true,
                    },
                ),
                (
                    2,
                    Todo {
                        title: "test it against real servers".into(),
                        done: false,
                    },
                ),
            ])
            .await?;
        let mut second = todos.get(&2).await?.expect("saved above");
        second.done = true;
        todos.save(&2, &second).await?;
        Ok::<(), StoreError>(())
    })?;

    // Four threads write at once through the one writer connection.
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let todos = todos.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let id = 100 + t * 10 + i;
                    let todo = Todo {
                        title: format!("thread {t}, item {i}"),
                        done: false,
                    };
                    block_on(todos.save(&id, &todo))?;
                }
                Ok::<(), StoreError>(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread")?;
    }

    let all = block_on(todos.get_all())?;
    println!("{} todos:", all.len());
    for (id, todo) in all.iter().take(4) {
        println!(
            "  #{id}: {} [{}]",
            todo.title,
            if todo.done { "x" } else { " " }
        );
    }
    println!("  ...");
    let removed = block_on(todos.delete_many(&(100..140).collect::<Vec<_>>()))?;
    println!(
        "removed {removed}; {} left",
        block_on(todos.get_all())?.len()
    );
    println!("writer: {:?}", writer.current_metrics());
    println!("readers: {:?}", readers.current_metrics());

    drop(todos);
    writer.close_blocking();
    readers.close_blocking();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
