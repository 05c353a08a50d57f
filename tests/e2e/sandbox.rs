//! placeholder; filled below
