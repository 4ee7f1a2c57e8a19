//! Inputs shared by sluice's benchmarks: realistic manager traffic, built once.

/// `count` Diamond metric bodies as the manager's agents publish them: 10 collectors' paths over
/// hosts of two deployments, one with dots in its id.
pub fn diamond_bodies(count: usize) -> Vec<Vec<u8>> {
    const PATHS: [&str; 10] = [
        "cpu.total.user",
        "cpu.total.system",
        "cpu.total.idle",
        "memory.MemFree",
        "memory.Buffers",
        "loadavg.01",
        "loadavg.05",
        "diskspace.root.byte_free",
        "network.eth0.rx_byte",
        "network.eth0.tx_byte",
    ];
    (0..count)
        .map(|index| {
            let deployment = if index % 2 == 0 {
                "nodecellar"
            } else {
                "shop.prod.eu"
            };
            let node_id = format!("nodejs_host_{:05x}", index % 200);
            let path = PATHS[index % PATHS.len()];
            let (collector, rest) = path.split_once('.').unwrap_or((path, ""));
            serde_json::json!({
                "node_id": node_id,
                "node_name": "nodejs_host",
                "deployment_id": deployment,
                "name": collector,
                "path": rest.replace('.', "_"),
                "metric": (index as f64) * 1.25,
                "unit": "",
                "type": "GAUGE",
                "host": node_id,
                "service": format!("{deployment}.nodejs_host.{node_id}.{path}"),
                "time": 1_466_000_000 + index as i64,
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}
