//! What each graph costs: bytes on disk (the graph and the external-data files it names) and how
//! much the process's resident memory grew while ONNX Runtime opened it (model info's breakdown).

use std::path::Path;

use crate::runtime::confinement::external_locations;

/// One graph's footprint, as model info reports it.
#[derive(Debug, Clone, Default)]
pub struct GraphFootprint {
    pub graph_bytes: u64,
    /// Sizes of the distinct external-data files the graph names (weights mapped from them).
    pub external_data_bytes: u64,
    /// Resident memory the process gained while the session was created (0 where unknown; other
    /// threads allocating at the same time count too).
    pub rss_growth_bytes: u64,
}

impl GraphFootprint {
    pub fn on_disk(path: &Path) -> Self {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut locations = external_locations(path).unwrap_or_default();
        locations.sort();
        locations.dedup();
        Self {
            graph_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            external_data_bytes: locations.iter().map(|l| std::fs::metadata(dir.join(l)).map_or(0, |m| m.len())).sum(),
            rss_growth_bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.graph_bytes + self.external_data_bytes
    }
}

/// The default memory budget of a request: half of the machine's memory, or of the cgroup's
/// limit when that is lower (a container); 4 GiB where neither can be read.
pub fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map(|kib| kib * 1024);
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok());
    let machine = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(t), None) => t,
        (None, Some(c)) => c,
        (None, None) => 8 << 30,
    };
    machine / 2
}

/// The process's resident set in bytes (Linux `/proc/self/statm`; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_graphs_have_sizes_and_the_process_a_resident_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5-tiny");
        let f = GraphFootprint::on_disk(&dir.join("encoder_model.onnx"));
        assert!(f.graph_bytes > 100_000);
        assert_eq!(f.external_data_bytes, 0, "the fixtures keep their weights inside");
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
