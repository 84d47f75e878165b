//! The factories the doc examples share, so that each example shows only the item it is about.
//! Hidden from the documentation and not part of the API: it may change in any release.
//!
//! The examples of [`ConnectionFactory`] and of [`ConnectionPool`](crate::ConnectionPool)
//! itself write their factories out; the others bring one in with a hidden line,
//! `# use nexus_pool::doc_support::Units;`.

use crate::ConnectionFactory;

/// Makes `()` connections, at once and always: for examples about the pool, not the
/// connection.
#[derive(Debug)]
pub struct Units;

impl ConnectionFactory for Units {
    type Connection = ();
    type Error = std::io::Error;

    async fn create(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// Makes empty `Vec<u8>` connections: for examples that write into a connection and look at it
/// again.
#[derive(Debug)]
pub struct Buffers;

impl ConnectionFactory for Buffers {
    type Connection = Vec<u8>;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Vec<u8>, std::io::Error> {
        Ok(Vec::new())
    }
}

/// Makes `u32` connections holding the number it was given: for examples that tell a
/// connection by its value.
#[derive(Debug)]
pub struct Numbers(pub u32);

impl ConnectionFactory for Numbers {
    type Connection = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(self.0)
    }
}
