//! Logical dumps and restores of PostgreSQL (`pg_dump -Fc`) and MariaDB / MySQL
//! (`mariadb-dump`): one object format, whichever plugin made the dump. postgres-logical and
//! mysql-logical reach a server the Workload names; rds reaches an RDS instance's endpoint.

pub mod mysql;
pub mod postgres;
