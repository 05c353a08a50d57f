//! The memory limiter: one total over every linear memory and table of a Store.

/// Bytes a table element is charged: a funcref is a pointer.
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Linear memories and tables one Store may create. A component holds a few core instances
/// (each with its memory and tables); more than this is not a plugin built by a normal
/// toolchain.
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps the guest's memory: one total over every linear memory and table of the Store, since
/// a component may hold several core instances, each with memories of its own (a limit per
/// memory would let 8 memories take 8 times the limit). Remembers what was asked when it
/// refuses, so the error can say which limit was hit.
pub struct MemoryLimiter {
    pub max: u64,
    pub hit: Option<u64>,
    /// Bytes granted so far, over all memories and tables.
    total: u64,
    /// The last growth granted, taken back if wasmtime then fails it (e.g. past the
    /// memory's own maximum).
    pending: u64,
}

impl MemoryLimiter {
    pub fn new(max: u64) -> MemoryLimiter {
        MemoryLimiter {
            max,
            hit: None,
            total: 0,
            pending: 0,
        }
    }

    /// Bytes granted so far over every memory and table.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        let after = self.total.saturating_add(delta);
        if after > self.max {
            self.hit = Some(after);
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        self.total = after;
        self.pending = delta;
        Ok(true)
    }

    fn grow_failed(&mut self) {
        self.total = self.total.saturating_sub(self.pending);
        self.pending = 0;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }
    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_limit_is_one_total_over_every_memory() {
        let mut l = MemoryLimiter::new(100 << 20);
        // Eight memories of 12 MiB each fit (96 MiB); a ninth does not.
        for _ in 0..8 {
            assert!(l.memory_growing(0, 12 << 20, None).unwrap());
        }
        assert!(l.memory_growing(0, 12 << 20, None).is_err());
        assert_eq!(l.hit, Some(108 << 20));
        // Growing one of them counts only the growth.
        let mut l = MemoryLimiter::new(100 << 20);
        assert!(l.memory_growing(0, 60 << 20, None).unwrap());
        assert!(l.memory_growing(60 << 20, 90 << 20, None).unwrap());
        assert!(l.memory_growing(90 << 20, 101 << 20, None).is_err());
        // A growth wasmtime fails afterwards is taken back.
        let mut l = MemoryLimiter::new(100 << 20);
        assert!(l.memory_growing(0, 80 << 20, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("past the memory's maximum"))
            .unwrap();
        assert_eq!(l.total(), 0);
        // Tables count too.
        let mut l = MemoryLimiter::new(512 << 10);
        assert!(l.table_growing(0, 100_000, None).is_err());
    }
}
